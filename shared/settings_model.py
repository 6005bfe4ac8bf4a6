"""The settings model: every setting's key, default, bounds and help text, read from the environment by
pydantic-settings. Import `Settings` from shared.settings (which loads this module on first use, docs there)."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from shared.settings import PROJECT_ROOT, SettingsError

# Foundry agent names are letters, digits and hyphens, at most 63 long; the scenario and agent names follow the prefix.
FOUNDRY_PREFIX = r"^[A-Za-z0-9][A-Za-z0-9-]{0,23}$"
E164_OR_EMPTY = r"^(\+[1-9]\d{6,14})?$"


def _setting(key: str, default: Any, help: str, **bounds: Any) -> Any:
    # Floats never take nan or inf: float() reads both, a NaN timeout never expires and an infinite one waits forever.
    if isinstance(default, float):
        bounds.setdefault("allow_inf_nan", False)
    return Field(default, validation_alias=key, description=help, **bounds)


#: The mapping from_env() was given, read instead of os.environ while it builds (a context variable, so concurrent
#: builds on other threads or tasks each see their own).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("settings_environ", default=None)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source, over the mapping given to from_env() when there is one."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _ENVIRON.get()
        return super()._load_env_vars() if given is None else dict(given)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=True, frozen=True, extra="ignore")

    scenario: str = _setting(
        "SWITCHBOARD_SCENARIO", "utilities",
        "Scenario folder under scenarios/ (or an absolute path) that defines the agents.",
    )
    data_dir: Path = _setting(
        "SWITCHBOARD_DATA_DIR", Path(".data"),
        "Folder for embedded state: the SQLite customer store and the local token secret.",
    )
    public_url: str = _setting(
        "SWITCHBOARD_PUBLIC_URL", "",
        "Public base URL of the function app, used in links we send. Empty: http://127.0.0.1:$PORT.",
    )
    policy: Literal["auto", "offline", "openai", "foundry"] = _setting(
        "SWITCHBOARD_POLICY", "auto",
        "Who writes the agent's replies: `offline`, `openai`, `foundry`, or `auto` (foundry when AZURE_AI_PROJECT_ENDPOINT is set, else openai when an OpenAI endpoint is set).",
    )
    port: int = _setting(
        "PORT", 7071,
        "Port of the local Functions host (`make run`); it listens on 127.0.0.1.", ge=1, le=65535,
    )
    local_function_key: str = _setting(
        "LOCAL_FUNCTION_KEY", "",
        "Function key the local Functions host asks for, as Azure does: set, the function-level routes (POST /api/calls, /api/ops/*, ...) answer 401 without it in the x-functions-key header or ?code=; admin-level ones always. Empty: no keys checked, as Core Tools. Local only: in Azure the host checks its own keys.",
    )
    log_level: str = _setting("LOG_LEVEL", "INFO", "Python log level.")
    cosmos_endpoint: str = _setting(
        "COSMOS_ENDPOINT", "",
        "Cosmos DB for NoSQL account endpoint. Empty: embedded SQLite under SWITCHBOARD_DATA_DIR.",
    )
    cosmos_key: str = _setting(
        "COSMOS_KEY", "",
        "Cosmos account key. Empty: Entra ID (managed identity) through azure-identity.",
    )
    cosmos_database: str = _setting("COSMOS_DATABASE", "switchboard", "Cosmos database name.")
    cosmos_container: str = _setting("COSMOS_CONTAINER", "customers", "Cosmos container, partitioned on /customer_id.")
    cosmos_verify_tls: bool = _setting(
        "COSMOS_VERIFY_TLS", True,
        "Verify the Cosmos TLS certificate; `false` only for a local emulator's self-signed one.",
    )
    redis_url: str = _setting(
        "REDIS_URL", "",
        "Redis URL for hot session state (redis:// or rediss://). A password in it is used as given; a rediss:// URL without one signs in with Microsoft Entra ID as the app's identity (AZURE_CLIENT_ID), as in Azure. Empty: see SESSION_STATE.",
    )
    session_ttl_seconds: int = _setting(
        "SESSION_TTL_SECONDS", 86400,
        "How long hot session state lives after its last use.", ge=0,
    )
    session_index_max: int = _setting(
        "SESSION_INDEX_MAX", 20,
        "Sessions a customer record lists at most: the active ones always, then the most recent closed ones. Older sessions age out of the record (read one at a time) and keep their transcript for SESSION_RETENTION_DAYS.", gt=0,
    )
    session_retention_days: float = _setting(
        "SESSION_RETENTION_DAYS", 365.0,
        "How long a closed session's transcript is kept after its last change (Cosmos per-item TTL; SQLite deletes it). 0: for ever.", ge=0,
    )
    anonymous_customer_ttl_seconds: float = _setting(
        "ANONYMOUS_CUSTOMER_TTL_SECONDS", 86400.0,
        "A web chat visitor who never says a word (no identity but the browser session) is deleted this long after arriving; their first message, or any other identity, keeps them. 0: never deleted.", ge=0,
    )
    session_state: Literal["auto", "sqlite", "memory", "redis", "cosmos"] = _setting(
        "SESSION_STATE", "auto",
        "Where hot session state, queue counters and processed-event ids live: `sqlite` (a file in SWITCHBOARD_DATA_DIR, shared by the local processes), `memory` (this process only), `redis`, `cosmos`, or `auto` (redis when REDIS_URL is set, else cosmos when COSMOS_ENDPOINT is set, else sqlite).",
    )
    cosmos_state_container: str = _setting(
        "COSMOS_STATE_CONTAINER", "sessions",
        "Cosmos container for session state when SESSION_STATE resolves to cosmos: partitioned on /id, TTL on.",
    )
    azure_openai_endpoint: str = _setting(
        "AZURE_OPENAI_ENDPOINT", "",
        "Azure OpenAI endpoint. Set: the OpenAI policy uses it.",
    )
    azure_openai_deployment: str = _setting(
        "AZURE_OPENAI_DEPLOYMENT", "gpt-4o-mini",
        "Azure OpenAI chat model deployment name.",
    )
    azure_openai_api_version: str = _setting("AZURE_OPENAI_API_VERSION", "2024-10-21", "Azure OpenAI REST API version.")
    azure_openai_api_key: str = _setting(
        "AZURE_OPENAI_API_KEY", "",
        "Azure OpenAI key. Empty: Entra ID (managed identity) through azure-identity.",
    )
    openai_base_url: str = _setting(
        "OPENAI_BASE_URL", "",
        "Any OpenAI-compatible endpoint (used when AZURE_OPENAI_ENDPOINT is empty).",
    )
    openai_api_key: str = _setting("OPENAI_API_KEY", "", "Key for OPENAI_BASE_URL.")
    openai_model: str = _setting("OPENAI_MODEL", "gpt-4o-mini", "Model name for OPENAI_BASE_URL.")
    llm_timeout_seconds: float = _setting(
        "LLM_TIMEOUT_SECONDS", 20.0,
        "How long the LLM may take to begin an answer (its retries included) or pause within one; on expiry the customer hears a fallback line.", gt=0,
    )
    azure_ai_project_endpoint: str = _setting(
        "AZURE_AI_PROJECT_ENDPOINT", "",
        "Azure AI Foundry project endpoint (https://<account>.services.ai.azure.com/api/projects/<project>). Set: `auto` picks the Foundry policy, whose agents run on AZURE_OPENAI_DEPLOYMENT; one conversation per customer across channels (docs/deploy.md).",
    )
    foundry_agent_prefix: str = _setting(
        "FOUNDRY_AGENT_PREFIX", "switchboard",
        "Prefix of the Foundry agent names that `python -m shared.foundry sync` creates and the Foundry policy calls: <prefix>-<scenario>-<agent>.", pattern=FOUNDRY_PREFIX,
    )
    azure_client_id: str = _setting(
        "AZURE_CLIENT_ID", "",
        "Client id of the user-assigned managed identity that azure-identity should use.",
    )
    token_secret: str = _setting(
        "SWITCHBOARD_TOKEN_SECRET", "",
        "HMAC secret for signed tokens (web chat sessions, handoff links, a call's media, control and callback tokens). Empty: a random one kept in SWITCHBOARD_DATA_DIR (local only).",
    )
    handoff_remind_after_seconds: float = _setting(
        "HANDOFF_REMIND_AFTER_SECONDS", 600.0,
        "After a channel handoff invite, how long to wait for the customer before one reminder.", gt=0,
    )
    handoff_expire_after_seconds: float = _setting(
        "HANDOFF_EXPIRE_AFTER_SECONDS", 3600.0,
        "After the reminder, how long to wait before the handoff expires.", gt=0,
    )
    callback_poll_seconds: float = _setting(
        "CALLBACK_POLL_SECONDS", 20.0,
        "While a \"when it's my turn\" callback waits, how often it looks at the queue's estimated wait (a durable timer). See docs/outbound.md.", gt=0, le=3600,
    )
    callback_max_turn_wait_seconds: float = _setting(
        "CALLBACK_MAX_TURN_WAIT_SECONDS", 14400.0,
        "How long a \"when it's my turn\" callback waits for the estimate to drop under the scenario's threshold (omnichannel.queue_wait_threshold_seconds) before it calls anyway.", gt=0, le=7 * 24 * 3600,
    )
    callback_retry_after_seconds: float = _setting(
        "CALLBACK_RETRY_AFTER_SECONDS", 180.0,
        "How long after a callback nobody took (busy, no answer, an answering machine) the one retry is placed.", gt=0, le=24 * 3600,
    )
    callback_outcome_wait_seconds: float = _setting(
        "CALLBACK_OUTCOME_WAIT_SECONDS", 90.0,
        "How long (real time, in one activity) the call step waits for a placed callback to be taken or refused: the ring time plus the answering-machine screen. Kept under host.json's 5-minute functionTimeout.", gt=0, le=240,
    )
    callback_screen_seconds: float = _setting(
        "CALLBACK_SCREEN_SECONDS", 10.0,
        "After a callback connects, how long its `answered` may still turn into `voicemail` (the media gateway's answering-machine screen) before the call counts as reaching a person.", ge=0, le=60,
    )
    webchat_token_ttl_seconds: int = _setting(
        "WEBCHAT_TOKEN_TTL_SECONDS", 86400,
        "Lifetime of a web chat session token.", gt=0,
    )
    webchat_max_message_chars: int = _setting(
        "WEBCHAT_MAX_MESSAGE_CHARS", 2000,
        "Longest customer message accepted by web chat.", gt=0,
    )
    webchat_sessions_per_address: int = _setting(
        "WEBCHAT_SESSIONS_PER_ADDRESS", 30,
        "Web chat sessions one client address may start per WEBCHAT_SESSIONS_WINDOW_SECONDS (an IPv6 client's /64 counts as one address); more get 429 with Retry-After. 0: no limit.", ge=0,
    )
    webchat_sessions_window_seconds: int = _setting(
        "WEBCHAT_SESSIONS_WINDOW_SECONDS", 60,
        "The window WEBCHAT_SESSIONS_PER_ADDRESS counts in, from an address's first new session in it.", gt=0,
    )
    acs_endpoint: str = _setting(
        "ACS_ENDPOINT", "",
        "Azure Communication Services endpoint (https://<resource>.communication.azure.com) that sends WhatsApp replies. Empty under `make run`: the local ACS emulator.",
    )
    acs_access_key: str = _setting(
        "ACS_ACCESS_KEY", "",
        "ACS access key. Empty: Entra ID (managed identity) through azure-identity. Under `make run` without ACS_ENDPOINT: the emulator's key (random unless set).",
    )
    whatsapp_channel_id: str = _setting(
        "WHATSAPP_CHANNEL_ID", "",
        "Channel registration id (a GUID) of the WhatsApp number on the ACS resource that replies come from. Under `make run` without ACS_ENDPOINT: the emulator's.",
    )
    acs_sms_from: str = _setting(
        "ACS_SMS_FROM", "",
        "The SMS-capable number on the ACS resource (E.164, e.g. +18005550100) that texts come from: replies to inbound texts, verification codes, web chat links for callers without WhatsApp, promised notifications. Empty: nothing is texted (codes go by WhatsApp). Under `make run` without ACS_ENDPOINT: the emulator's number. See docs/sms.md.", pattern=E164_OR_EMPTY,
    )
    acs_call_from: str = _setting(
        "ACS_CALL_FROM", "",
        "The number on the ACS resource (E.164) that the calls we place show as caller id: callbacks, promised notifications to a customer we cannot text, POST /api/calls. Empty: ACS_SMS_FROM. Set it when the resource's calling number cannot send texts, or there is none that can. See docs/outbound.md.", pattern=E164_OR_EMPTY,
    )
    acs_emulator_port: int = _setting(
        "ACS_EMULATOR_PORT", 7072,
        "Port of the local ACS emulator that `make run` starts when ACS_ENDPOINT is empty; it listens on 127.0.0.1.", ge=1, le=65535,
    )
    gateway_port: int = _setting(
        "GATEWAY_PORT", 8765,
        "Port of the local media gateway (`make run`); it listens on 127.0.0.1.", ge=1, le=65535,
    )
    gateway_public_url: str = _setting(
        "GATEWAY_PUBLIC_URL", "",
        "WebSocket base URL at which ACS reaches the media gateway (wss://... in Azure). Empty: ws://127.0.0.1:$GATEWAY_PORT.",
    )
    gateway_host: str = _setting(
        "GATEWAY_HOST", "127.0.0.1",
        "Interface the media gateway listens on; its container sets 0.0.0.0.",
    )
    gateway_turn_detection: Literal["model", "silence"] = _setting(
        "GATEWAY_TURN_DETECTION", "model",
        "How the media gateway hears that a caller finished: `model` (after a short pause, an end-of-turn model on their voice and the words so far; docs/voice.md) or `silence` (a fixed GATEWAY_END_OF_TURN_MS of silence). Without the model's file (`make setup` fetches it), `silence`.",
    )
    gateway_turn_pause_ms: int = _setting(
        "GATEWAY_TURN_PAUSE_MS", 400,
        "`model`: the shortest silence after caller speech that ends their turn when the model and their words say they finished, in ms (the gateway asks at 200 ms, so the answer is ready by then).", gt=0,
    )
    gateway_turn_wait_ms: int = _setting(
        "GATEWAY_TURN_WAIT_MS", 1500,
        "`model`: the silence that ends a turn the model judged unfinished (a caller reading out a number), in ms.", gt=0,
    )
    gateway_end_of_turn_ms: int = _setting(
        "GATEWAY_END_OF_TURN_MS", 500,
        "`silence`: silence after caller speech that ends their turn, in ms: lower answers sooner, higher lets callers pause.", gt=0,
    )
    gateway_max_calls: int = _setting(
        "GATEWAY_MAX_CALLS", 100,
        "Conversations one media gateway replica carries at once, split evenly over its GATEWAY_WORKERS; the next callers are held with hold music (and counted waiting on the desk) until one ends, and beyond as many again get 503 on the WebSocket upgrade.", gt=0,
    )
    gateway_workers: int = _setting(
        "GATEWAY_WORKERS", 0,
        "Media gateway worker processes on one replica, sharing its port (calls are spread over them; docs/cost.md, \"Media gateway CPU\"). 0: one per core the container may use.", ge=0,
    )
    gateway_preload_models: bool = _setting(
        "GATEWAY_PRELOAD_MODELS", True,
        "Load the media gateway's speech models as it starts, so the first caller does not wait (`false`: on the first call; the tests' hosts do this).",
    )
    gateway_stats_key: str = _setting(
        "GATEWAY_STATS_KEY", "",
        "Bearer key for the media gateway's `GET /stats`. Empty: /stats answers only direct loopback requests (127.0.0.1, nothing forwarded), so it is closed on the container's public ingress.",
    )
    speech_endpoint: str = _setting(
        "SPEECH_ENDPOINT", "",
        "Azure AI Speech endpoint (https://<resource>.cognitiveservices.azure.com/). Set (or SPEECH_REGION): the gateway uses Azure speech-to-text and neural TTS. Empty: offline faster-whisper and piper.",
    )
    speech_region: str = _setting(
        "SPEECH_REGION", "",
        "Azure AI Speech region (e.g. eastus), an alternative to SPEECH_ENDPOINT when using a key.",
    )
    speech_key: str = _setting(
        "SPEECH_KEY", "",
        "Azure AI Speech key. Empty: Entra ID (managed identity) through azure-identity, which needs SPEECH_ENDPOINT.",
    )
    speech_voice: str = _setting(
        "SPEECH_VOICE", "en-US-JennyNeural",
        "Azure neural TTS voice the agent speaks with (the offline voice is piper's en_US joe).",
    )
    speech_language: str = _setting("SPEECH_LANGUAGE", "en-US", "Language Azure speech-to-text recognises.")
    call_audio_sample_rate: Literal[16000, 24000] = _setting(
        "CALL_AUDIO_SAMPLE_RATE", 16000,
        "Call audio streamed between ACS and the media gateway: 16000 or 24000 Hz (16-bit mono PCM, 20 ms frames).",
    )
    call_token_ttl_seconds: int = _setting(
        "CALL_TOKEN_TTL_SECONDS", 7200,
        "The longest call: lifetime of the call-control token the media gateway holds for a call's control routes and handoff, of the callback URL's token, and of the call's record.", gt=0,
    )
    call_media_token_ttl_seconds: int = _setting(
        "CALL_MEDIA_TOKEN_TTL_SECONDS", 300,
        "Lifetime of the token in the media gateway URL: ACS opens the call's media socket with it as the call connects, once.", gt=0,
    )
    acs_resource_immutable_id: str = _setting(
        "ACS_RESOURCE_IMMUTABLE_ID", "",
        "The ACS resource's immutable id. Set: call callbacks must carry ACS's signed JWT for it. Empty: the signed per-call token in the callback URL is checked alone (local).",
    )
    acs_openid_configuration_url: str = _setting(
        "ACS_OPENID_CONFIGURATION_URL", "https://acscallautomation.communication.azure.com/calling/.well-known/acsopenidconfiguration",
        "OpenID metadata naming the keys that sign ACS callback JWTs.",
    )
    applicationinsights_connection_string: str = _setting(
        "APPLICATIONINSIGHTS_CONNECTION_STRING", "",
        "Application Insights connection string. Set: traces and metrics go there through azure-monitor-opentelemetry (infra/ sets it for the function app and the media gateway). See docs/observability.md.",
    )
    otel_exporter_otlp_endpoint: str = _setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "",
        "OTLP/HTTP collector base URL (e.g. http://127.0.0.1:4318). Set: traces and metrics are exported there too; the other OTEL_EXPORTER_OTLP_* variables apply.",
    )
    telemetry: str = _setting(
        "SWITCHBOARD_TELEMETRY", "",
        "Telemetry on one machine: `console` writes every span and metric point as a JSON line on stderr; a file path appends the same lines there. Empty: none.",
    )
    summary_seconds: float = _setting(
        "SWITCHBOARD_SUMMARY_SECONDS", 10.0,
        "How often `make run` prints its one-line live summary (turns and latency per channel, handoffs, dedup hits, errors), only when something happened; 0 turns it off.", ge=0,
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (_Environment(settings_cls, case_sensitive=True),)  # the environment only: no .env, no secrets dir

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings in `environ` (default: the process environment), or SettingsError naming each bad key."""
        token = _ENVIRON.set(environ)
        try:
            return cls()
        except ValidationError as exc:
            raise SettingsError("; ".join(_describe(error) for error in exc.errors())) from None
        finally:
            _ENVIRON.reset(token)

    # Reading -------------------------------------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _strip(cls, values: Any) -> Any:
        # Values pasted into portals and shells carry stray spaces and newlines; no setting means them.
        if isinstance(values, dict):
            return {k: v.strip() if isinstance(v, str) else v for k, v in values.items()}
        return values

    @field_validator("policy", "session_state", "gateway_turn_detection", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("call_audio_sample_rate", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.isdigit() else value

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    @field_validator("azure_ai_project_endpoint", "acs_endpoint", "speech_endpoint", "public_url", "gateway_public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _derive(self) -> Settings:
        """Defaults that depend on other settings. (The model is frozen; this runs once, while it is built.)"""
        derived = {
            "data_dir": self.data_dir if self.data_dir.is_absolute() else PROJECT_ROOT / self.data_dir,
            "public_url": self.public_url or f"http://127.0.0.1:{self.port}",
            "gateway_public_url": self.gateway_public_url or f"ws://127.0.0.1:{self.gateway_port}",
            "session_state": self._resolved_session_state(),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)
        return self

    def _resolved_session_state(self) -> str:
        choice = self.session_state
        if choice == "auto":
            return "redis" if self.redis_url else "cosmos" if self.cosmos_endpoint else "sqlite"
        if choice == "redis" and not self.redis_url:
            raise ValueError("SESSION_STATE=redis needs REDIS_URL")
        if choice == "cosmos" and not self.cosmos_endpoint:
            raise ValueError("SESSION_STATE=cosmos needs COSMOS_ENDPOINT")
        return choice

    # What the settings choose ---------------------------------------------------------------------------------------

    @property
    def uses_azure_speech(self) -> bool:
        """Azure AI Speech is configured: the media gateway's speech-to-text and TTS use it."""
        if self.speech_region and not self.speech_key:
            raise SettingsError("SPEECH_REGION needs SPEECH_KEY; with managed identity set SPEECH_ENDPOINT instead")
        return bool(self.speech_endpoint or self.speech_region)

    @property
    def uses_foundry(self) -> bool:
        """The Foundry policy writes the replies (uses_llm then says whether its fallback is the OpenAI policy)."""
        if self.policy == "foundry" and not self.azure_ai_project_endpoint:
            raise SettingsError("SWITCHBOARD_POLICY=foundry needs AZURE_AI_PROJECT_ENDPOINT")
        return self.policy == "foundry" or (self.policy == "auto" and bool(self.azure_ai_project_endpoint))

    @property
    def uses_llm(self) -> bool:
        if self.policy == "offline":
            return False
        configured = bool(self.azure_openai_endpoint or self.openai_base_url)
        if self.policy == "openai" and not configured:
            raise SettingsError("SWITCHBOARD_POLICY=openai needs AZURE_OPENAI_ENDPOINT or OPENAI_BASE_URL")
        return configured


def _describe(error: Mapping[str, Any]) -> str:
    """One validation error as a person reads it: the key, what it must be, and what it was."""
    key = ".".join(str(part) for part in error["loc"]) or "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if not error["loc"]:
        return message  # a rule across settings, which names its keys itself
    # "Input should be a valid integer" reads, for a setting, as "PORT must be a valid integer".
    said = f"{key} must be {message.removeprefix('Input should be ')}" if message.startswith("Input should be ") \
        else f"{key}: {message}"
    if "input" in error and not isinstance(error["input"], Mapping):
        return f"{said}, not {error['input']!r}"
    return said


def _as_text(default: Any) -> str:
    """A default as it is written in the environment (and in the README)."""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float) and default.is_integer():
        return str(int(default))
    return str(default)


#: key -> (default, what it switches), from the model: what local.settings.sample.json, the README table, the
#: telemetry exporters and the test hosts read without building Settings.
SETTINGS: dict[str, tuple[str, str]] = {
    str(field.validation_alias): (_as_text(field.default), field.description or "")
    for field in Settings.model_fields.values()
}


def readme_table() -> str:
    """The README's configuration table (markdown), generated from the model."""
    rows = ["| setting | default | what it switches |", "|---|---|---|"]
    for key, (default, help) in SETTINGS.items():
        rows.append(f"| `{key}` | {f'`{default}`' if default else '(empty)'} | {help} |")
    return "\n".join(rows) + "\n"

