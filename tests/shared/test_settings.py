import math
import subprocess
import sys

import pytest

from shared.settings import PROJECT_ROOT, SETTINGS, Settings, SettingsError, readme_table


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
        numbers = {name: getattr(settings, name) for name in Settings.model_fields
                   if isinstance(getattr(settings, name), float)}
        assert all(math.isfinite(n) for n in numbers.values()), f"{key}={value} was taken: {numbers}"
    float_keys = {"LLM_TIMEOUT_SECONDS", "HANDOFF_REMIND_AFTER_SECONDS", "HANDOFF_EXPIRE_AFTER_SECONDS",
                  "SWITCHBOARD_SUMMARY_SECONDS"}
    assert float_keys <= refused


def test_every_setting_is_in_the_sample_and_the_readme() -> None:
    import json

    sample = json.loads((PROJECT_ROOT / "local.settings.sample.json").read_text())["Values"]
    readme = (PROJECT_ROOT / "README.md").read_text()
    for key in SETTINGS:
        assert key in sample, f"{key} missing from local.settings.sample.json"
        assert f"`{key}`" in readme, f"{key} missing from the README's configuration table"


@pytest.mark.parametrize(("key", "value"), [
    ("LLM_TIMEOUT_SECONDS", "-5"), ("HANDOFF_REMIND_AFTER_SECONDS", "0"), ("SESSION_TTL_SECONDS", "-1"),
    ("PORT", "0"), ("GATEWAY_PORT", "70000"), ("GATEWAY_MAX_CALLS", "0"), ("GATEWAY_TURN_DETECTION", "psychic"),
    ("SESSION_STATE", "mongo"), ("CALL_AUDIO_SAMPLE_RATE", "44100"), ("ACS_SMS_FROM", "555-0100"),
    ("FOUNDRY_AGENT_PREFIX", "-bad"), ("GATEWAY_PRELOAD_MODELS", "sometimes"),
])
def test_a_value_out_of_bounds_or_not_a_choice_is_refused_with_its_key_and_what_it_was(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({key: value})
    assert key in str(refused.value) and value in str(refused.value), str(refused.value)


def test_values_are_read_as_people_write_them() -> None:
    settings = Settings.from_env({"PORT": " 8080\n", "SWITCHBOARD_POLICY": "Offline", "COSMOS_VERIFY_TLS": "OFF",
                                  "LOG_LEVEL": "debug", "ACS_ENDPOINT": "https://acs.example/", "CALL_AUDIO_SAMPLE_RATE": "24000"})
    assert (settings.port, settings.policy, settings.cosmos_verify_tls) == (8080, "offline", False)
    assert (settings.log_level, settings.acs_endpoint, settings.call_audio_sample_rate) == ("DEBUG", "https://acs.example", 24000)
    assert settings.public_url == "http://127.0.0.1:8080"  # follows PORT when not set


def test_the_process_environment_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MAX_CALLS", "7")
    monkeypatch.setenv("SESSION_STATE", "memory")
    assert Settings.from_env().gateway_max_calls == 7 and Settings.from_env().session_state == "memory"
    assert Settings.from_env({}).gateway_max_calls == 100  # a mapping given is all there is: the shell is not read


def test_the_readme_configuration_table_is_the_one_the_model_generates() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert readme_table() in readme, "README.md's configuration table is stale: paste `python -m shared.settings --readme`"
    printed = subprocess.run([sys.executable, "-m", "shared.settings", "--readme"], cwd=PROJECT_ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert printed == readme_table()


def test_telemetry_settings_default_to_off_as_the_exporters_read_them_before_the_model_loads() -> None:
    from shared.telemetry.export import wanted

    for key in ("APPLICATIONINSIGHTS_CONNECTION_STRING", "OTEL_EXPORTER_OTLP_ENDPOINT", "SWITCHBOARD_TELEMETRY"):
        assert SETTINGS[key][0] == "", f"{key} has a default: shared/telemetry/export.py must read it from the model"
        assert wanted({key: "console" if key == "SWITCHBOARD_TELEMETRY" else "x"}) is True
    assert wanted({}) is False


def test_the_function_app_loads_without_the_settings_model() -> None:
    """pydantic costs ~100 ms to import; the host loads the app on a cold start before any request needs settings."""
    probe = "import sys, function_app; print('shared.settings_model' in sys.modules, 'pydantic' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "SWITCHBOARD_SKIP_LOCAL_SETTINGS": "1"})
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split() == ["False", "False"], loaded.stdout
