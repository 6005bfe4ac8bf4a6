import math
from dataclasses import fields

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


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_no_setting_takes_nan_or_infinity_and_a_refusal_names_its_key(value: str) -> None:
    """float() reads these, and a NaN timeout never expires: every setting that becomes a float refuses them."""
    refused = set()
    for key in SETTINGS:
        try:
            settings = Settings.from_env({key: value})
        except SettingsError as exc:
            assert key in str(exc), (key, str(exc))
            refused.add(key)
            continue
        numbers = {f.name: getattr(settings, f.name) for f in fields(settings)
                   if isinstance(getattr(settings, f.name), float)}
        assert all(math.isfinite(n) for n in numbers.values()), f"{key}={value} was taken: {numbers}"
    float_keys = {"LLM_TIMEOUT_SECONDS", "HANDOFF_REMIND_AFTER_SECONDS", "HANDOFF_EXPIRE_AFTER_SECONDS",
                  "SWITCHBOARD_SUMMARY_SECONDS"}
    assert float_keys <= refused


def test_every_setting_is_in_the_sample_and_the_readme() -> None:
    import json

    from shared.settings import PROJECT_ROOT

    sample = json.loads((PROJECT_ROOT / "local.settings.sample.json").read_text())["Values"]
    readme = (PROJECT_ROOT / "README.md").read_text()
    for key in SETTINGS:
        assert key in sample, f"{key} missing from local.settings.sample.json"
        assert f"`{key}`" in readme, f"{key} missing from the README's configuration table"
