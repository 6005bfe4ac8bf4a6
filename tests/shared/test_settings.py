import pytest

from shared.settings import SETTINGS, Settings, SettingsError


def test_no_settings_means_the_embedded_offline_stack() -> None:
    settings = Settings.from_env({})
    assert settings.port == 7071
    assert settings.cosmos_endpoint == "" and settings.redis_url == ""
    assert settings.uses_llm is False
    assert settings.public_url == "http://127.0.0.1:7071"
    assert settings.data_dir.is_absolute()


def test_an_endpoint_switches_the_policy_to_openai() -> None:
    assert Settings.from_env({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}).uses_llm is True
    assert Settings.from_env({"OPENAI_BASE_URL": "http://x/v1", "SWITCHBOARD_POLICY": "offline"}).uses_llm is False
    with pytest.raises(SettingsError, match="OPENAI_BASE_URL"):
        Settings.from_env({"SWITCHBOARD_POLICY": "openai"}).uses_llm


@pytest.mark.parametrize(
    ("key", "value"), [("PORT", "seventy"), ("COSMOS_VERIFY_TLS", "maybe"), ("SWITCHBOARD_POLICY", "magic")]
)
def test_a_bad_value_names_its_key(key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=key):
        Settings.from_env({key: value})


def test_every_setting_is_in_the_sample_and_the_readme() -> None:
    import json

    from shared.settings import PROJECT_ROOT

    sample = json.loads((PROJECT_ROOT / "local.settings.sample.json").read_text())["Values"]
    readme = (PROJECT_ROOT / "README.md").read_text()
    for key in SETTINGS:
        assert key in sample, f"{key} missing from local.settings.sample.json"
        assert f"`{key}`" in readme, f"{key} missing from the README's configuration table"
