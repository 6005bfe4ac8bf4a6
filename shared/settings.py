"""Settings, read once from the environment (Azure app settings, local.settings.json Values, or the shell).

Every setting has a default that keeps the embedded, offline stack working; each Azure setting switches one adapter
to the real service. A value that cannot be read names its key. The README's configuration table mirrors SETTINGS.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent

#: key -> (default, what it switches). The single source for the README table and local.settings.sample.json.
SETTINGS: dict[str, tuple[str, str]] = {
    "SWITCHBOARD_SCENARIO": ("utilities", "Scenario folder under scenarios/ (or an absolute path) that defines the agents."),
    "SWITCHBOARD_DATA_DIR": (".data", "Folder for embedded state: the SQLite customer store and the local token secret."),
    "SWITCHBOARD_PUBLIC_URL": ("", "Public base URL of the function app, used in links we send. Empty: http://127.0.0.1:$PORT."),
    "SWITCHBOARD_POLICY": ("auto", "Who writes the agent's replies: `offline`, `openai`, or `auto` (openai when an endpoint is set)."),
    "PORT": ("7071", "Port of the local Functions host (`make run`); it listens on 127.0.0.1."),
    "LOG_LEVEL": ("INFO", "Python log level."),
    "COSMOS_ENDPOINT": ("", "Cosmos DB for NoSQL account endpoint. Empty: embedded SQLite under SWITCHBOARD_DATA_DIR."),
    "COSMOS_KEY": ("", "Cosmos account key. Empty: Entra ID (managed identity) through azure-identity."),
    "COSMOS_DATABASE": ("switchboard", "Cosmos database name."),
    "COSMOS_CONTAINER": ("customers", "Cosmos container, partitioned on /customer_id."),
    "COSMOS_VERIFY_TLS": ("true", "Verify the Cosmos TLS certificate; `false` only for a local emulator's self-signed one."),
    "REDIS_URL": ("", "Redis URL for hot session state (redis:// or rediss://). A password in it is used as given; a rediss:// URL without one signs in with Microsoft Entra ID as the app's identity (AZURE_CLIENT_ID), as in Azure. Empty: see SESSION_STATE."),
    "SESSION_TTL_SECONDS": ("86400", "How long hot session state lives after its last use."),
    "SESSION_INDEX_MAX": ("20", "Sessions a customer record lists at most: the active ones always, then the most recent closed ones. Older sessions age out of the record (read one at a time) and keep their transcript for SESSION_RETENTION_DAYS."),
    "SESSION_RETENTION_DAYS": ("365", "How long a closed session's transcript is kept after its last change (Cosmos per-item TTL; SQLite deletes it). 0: for ever."),
    "ANONYMOUS_CUSTOMER_TTL_SECONDS": ("86400", "A web chat visitor who never says a word (no identity but the browser session) is deleted this long after arriving; their first message, or any other identity, keeps them. 0: never deleted."),
    "SESSION_STATE": ("auto", "Where hot session state, queue counters and processed-event ids live: `sqlite` (a file in SWITCHBOARD_DATA_DIR, shared by the local processes), `memory` (this process only), `redis`, `cosmos`, or `auto` (redis when REDIS_URL is set, else cosmos when COSMOS_ENDPOINT is set, else sqlite)."),
    "COSMOS_STATE_CONTAINER": ("sessions", "Cosmos container for session state when SESSION_STATE resolves to cosmos: partitioned on /id, TTL on."),
    "AZURE_OPENAI_ENDPOINT": ("", "Azure OpenAI endpoint. Set: the OpenAI policy uses it."),
    "AZURE_OPENAI_DEPLOYMENT": ("gpt-4o-mini", "Azure OpenAI chat model deployment name."),
    "AZURE_OPENAI_API_VERSION": ("2024-10-21", "Azure OpenAI REST API version."),
    "AZURE_OPENAI_API_KEY": ("", "Azure OpenAI key. Empty: Entra ID (managed identity) through azure-identity."),
    "OPENAI_BASE_URL": ("", "Any OpenAI-compatible endpoint (used when AZURE_OPENAI_ENDPOINT is empty)."),
    "OPENAI_API_KEY": ("", "Key for OPENAI_BASE_URL."),
    "OPENAI_MODEL": ("gpt-4o-mini", "Model name for OPENAI_BASE_URL."),
    "LLM_TIMEOUT_SECONDS": ("20", "How long the LLM may take to begin an answer (its retries included) or pause within one; on expiry the customer hears a fallback line."),
    "AZURE_CLIENT_ID": ("", "Client id of the user-assigned managed identity that azure-identity should use."),
    "SWITCHBOARD_TOKEN_SECRET": ("", "HMAC secret for signed tokens (web chat sessions, handoff links, a call's media, control and callback tokens). Empty: a random one kept in SWITCHBOARD_DATA_DIR (local only)."),
    "HANDOFF_REMIND_AFTER_SECONDS": ("600", "After a channel handoff invite, how long to wait for the customer before one reminder."),
    "HANDOFF_EXPIRE_AFTER_SECONDS": ("3600", "After the reminder, how long to wait before the handoff expires."),
    "WEBCHAT_TOKEN_TTL_SECONDS": ("86400", "Lifetime of a web chat session token."),
    "WEBCHAT_MAX_MESSAGE_CHARS": ("2000", "Longest customer message accepted by web chat."),
    "WEBCHAT_SESSIONS_PER_ADDRESS": ("30", "Web chat sessions one client address may start per WEBCHAT_SESSIONS_WINDOW_SECONDS (an IPv6 client's /64 counts as one address); more get 429 with Retry-After. 0: no limit."),
    "WEBCHAT_SESSIONS_WINDOW_SECONDS": ("60", "The window WEBCHAT_SESSIONS_PER_ADDRESS counts in, from an address's first new session in it."),
    "ACS_ENDPOINT": ("", "Azure Communication Services endpoint (https://<resource>.communication.azure.com) that sends WhatsApp replies. Empty under `make run`: the local ACS emulator."),
    "ACS_ACCESS_KEY": ("", "ACS access key. Empty: Entra ID (managed identity) through azure-identity. Under `make run` without ACS_ENDPOINT: the emulator's key (random unless set)."),
    "WHATSAPP_CHANNEL_ID": ("", "Channel registration id (a GUID) of the WhatsApp number on the ACS resource that replies come from. Under `make run` without ACS_ENDPOINT: the emulator's."),
    "ACS_SMS_FROM": ("", "The SMS-capable number on the ACS resource (E.164, e.g. +18005550100) that texts come from: replies to inbound texts, verification codes, web chat links for callers without WhatsApp, promised notifications. Empty: nothing is texted (codes go by WhatsApp). Under `make run` without ACS_ENDPOINT: the emulator's number. See docs/sms.md."),
    "ACS_EMULATOR_PORT": ("7072", "Port of the local ACS emulator that `make run` starts when ACS_ENDPOINT is empty; it listens on 127.0.0.1."),
    "GATEWAY_PORT": ("8765", "Port of the local media gateway (`make run`); it listens on 127.0.0.1."),
    "GATEWAY_PUBLIC_URL": ("", "WebSocket base URL at which ACS reaches the media gateway (wss://... in Azure). Empty: ws://127.0.0.1:$GATEWAY_PORT."),
    "GATEWAY_HOST": ("127.0.0.1", "Interface the media gateway listens on; its container sets 0.0.0.0."),
    "GATEWAY_END_OF_TURN_MS": ("500", "Silence after caller speech that ends their turn, in ms: lower answers sooner, higher lets callers pause."),
    "GATEWAY_MAX_CALLS": ("100", "Conversations one media gateway process carries at once; the next callers are held with hold music (and counted waiting on the desk) until one ends, and beyond as many again get 503 on the WebSocket upgrade."),
    "GATEWAY_PRELOAD_MODELS": ("true", "Load the media gateway's speech models as it starts, so the first caller does not wait (`false`: on the first call; the tests' hosts do this)."),
    "GATEWAY_STATS_KEY": ("", "Bearer key for the media gateway's `GET /stats`. Empty: /stats answers only direct loopback requests (127.0.0.1, nothing forwarded), so it is closed on the container's public ingress."),
    "SPEECH_ENDPOINT": ("", "Azure AI Speech endpoint (https://<resource>.cognitiveservices.azure.com/). Set (or SPEECH_REGION): the gateway uses Azure speech-to-text and neural TTS. Empty: offline faster-whisper and piper."),
    "SPEECH_REGION": ("", "Azure AI Speech region (e.g. eastus), an alternative to SPEECH_ENDPOINT when using a key."),
    "SPEECH_KEY": ("", "Azure AI Speech key. Empty: Entra ID (managed identity) through azure-identity, which needs SPEECH_ENDPOINT."),
    "SPEECH_VOICE": ("en-US-JennyNeural", "Azure neural TTS voice the agent speaks with (the offline voice is piper's en_US joe)."),
    "SPEECH_LANGUAGE": ("en-US", "Language Azure speech-to-text recognises."),
    "CALL_AUDIO_SAMPLE_RATE": ("16000", "Call audio streamed between ACS and the media gateway: 16000 or 24000 Hz (16-bit mono PCM, 20 ms frames)."),
    "CALL_TOKEN_TTL_SECONDS": ("7200", "The longest call: lifetime of the call-control token the media gateway holds for a call's control routes and handoff, of the callback URL's token, and of the call's record."),
    "CALL_MEDIA_TOKEN_TTL_SECONDS": ("300", "Lifetime of the token in the media gateway URL: ACS opens the call's media socket with it as the call connects, once."),
    "ACS_RESOURCE_IMMUTABLE_ID": ("", "The ACS resource's immutable id. Set: call callbacks must carry ACS's signed JWT for it. Empty: the signed per-call token in the callback URL is checked alone (local)."),
    "ACS_OPENID_CONFIGURATION_URL": ("https://acscallautomation.communication.azure.com/calling/.well-known/acsopenidconfiguration", "OpenID metadata naming the keys that sign ACS callback JWTs."),
    "APPLICATIONINSIGHTS_CONNECTION_STRING": ("", "Application Insights connection string. Set: traces and metrics go there through azure-monitor-opentelemetry (infra/ sets it for the function app and the media gateway). See docs/observability.md."),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("", "OTLP/HTTP collector base URL (e.g. http://127.0.0.1:4318). Set: traces and metrics are exported there too; the other OTEL_EXPORTER_OTLP_* variables apply."),
    "SWITCHBOARD_TELEMETRY": ("", "Telemetry on one machine: `console` writes every span and metric point as a JSON line on stderr; a file path appends the same lines there. Empty: none."),
    "SWITCHBOARD_SUMMARY_SECONDS": ("10", "How often `make run` prints its one-line live summary (turns and latency per channel, handoffs, dedup hits, errors), only when something happened; 0 turns it off."),
}


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the key."""


@dataclass(frozen=True)
class Settings:
    scenario: str
    data_dir: Path
    public_url: str
    policy: str
    port: int
    log_level: str
    cosmos_endpoint: str
    cosmos_key: str
    cosmos_database: str
    cosmos_container: str
    cosmos_verify_tls: bool
    redis_url: str
    session_ttl_seconds: int
    session_index_max: int
    session_retention_days: float
    anonymous_customer_ttl_seconds: float
    session_state: str  # memory, redis or cosmos: `auto` is resolved here
    cosmos_state_container: str
    azure_openai_endpoint: str
    azure_openai_deployment: str
    azure_openai_api_version: str
    azure_openai_api_key: str
    openai_base_url: str
    openai_api_key: str
    openai_model: str
    llm_timeout_seconds: float
    azure_client_id: str
    token_secret: str
    webchat_token_ttl_seconds: int
    handoff_remind_after_seconds: float
    handoff_expire_after_seconds: float
    webchat_max_message_chars: int
    webchat_sessions_per_address: int
    webchat_sessions_window_seconds: int
    acs_endpoint: str
    acs_access_key: str
    whatsapp_channel_id: str
    acs_sms_from: str
    acs_emulator_port: int
    gateway_port: int
    gateway_public_url: str
    gateway_host: str
    gateway_end_of_turn_ms: int
    gateway_max_calls: int
    gateway_preload_models: bool
    gateway_stats_key: str
    speech_endpoint: str
    speech_region: str
    speech_key: str
    speech_voice: str
    speech_language: str
    call_audio_sample_rate: int
    call_token_ttl_seconds: int
    call_media_token_ttl_seconds: int
    acs_resource_immutable_id: str
    acs_openid_configuration_url: str
    telemetry: str
    summary_seconds: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Reader(os.environ if environ is None else environ)
        data_dir = Path(env.str("SWITCHBOARD_DATA_DIR"))
        port = env.int("PORT")
        policy = env.str("SWITCHBOARD_POLICY").lower()
        if policy not in ("auto", "offline", "openai"):
            raise SettingsError(f"SWITCHBOARD_POLICY must be auto, offline or openai, not {policy!r}")
        gateway_port = env.int("GATEWAY_PORT")
        sample_rate = env.int("CALL_AUDIO_SAMPLE_RATE")
        if sample_rate not in (16000, 24000):
            raise SettingsError(f"CALL_AUDIO_SAMPLE_RATE must be 16000 or 24000, not {sample_rate}")
        return cls(
            scenario=env.str("SWITCHBOARD_SCENARIO"),
            data_dir=data_dir if data_dir.is_absolute() else PROJECT_ROOT / data_dir,
            public_url=(env.str("SWITCHBOARD_PUBLIC_URL") or f"http://127.0.0.1:{port}").rstrip("/"),
            policy=policy,
            port=port,
            log_level=env.str("LOG_LEVEL").upper(),
            cosmos_endpoint=env.str("COSMOS_ENDPOINT"),
            cosmos_key=env.str("COSMOS_KEY"),
            cosmos_database=env.str("COSMOS_DATABASE"),
            cosmos_container=env.str("COSMOS_CONTAINER"),
            cosmos_verify_tls=env.bool("COSMOS_VERIFY_TLS"),
            redis_url=env.str("REDIS_URL"),
            session_ttl_seconds=env.int("SESSION_TTL_SECONDS"),
            session_index_max=_positive(env, "SESSION_INDEX_MAX"),
            session_retention_days=_not_negative(env, "SESSION_RETENTION_DAYS"),
            anonymous_customer_ttl_seconds=_not_negative(env, "ANONYMOUS_CUSTOMER_TTL_SECONDS"),
            session_state=_session_state(env),
            cosmos_state_container=env.str("COSMOS_STATE_CONTAINER"),
            azure_openai_endpoint=env.str("AZURE_OPENAI_ENDPOINT"),
            azure_openai_deployment=env.str("AZURE_OPENAI_DEPLOYMENT"),
            azure_openai_api_version=env.str("AZURE_OPENAI_API_VERSION"),
            azure_openai_api_key=env.str("AZURE_OPENAI_API_KEY"),
            openai_base_url=env.str("OPENAI_BASE_URL"),
            openai_api_key=env.str("OPENAI_API_KEY"),
            openai_model=env.str("OPENAI_MODEL"),
            llm_timeout_seconds=env.float("LLM_TIMEOUT_SECONDS"),
            azure_client_id=env.str("AZURE_CLIENT_ID"),
            token_secret=env.str("SWITCHBOARD_TOKEN_SECRET"),
            webchat_token_ttl_seconds=env.int("WEBCHAT_TOKEN_TTL_SECONDS"),
            handoff_remind_after_seconds=env.float("HANDOFF_REMIND_AFTER_SECONDS"),
            handoff_expire_after_seconds=env.float("HANDOFF_EXPIRE_AFTER_SECONDS"),
            webchat_max_message_chars=env.int("WEBCHAT_MAX_MESSAGE_CHARS"),
            webchat_sessions_per_address=env.int("WEBCHAT_SESSIONS_PER_ADDRESS"),
            webchat_sessions_window_seconds=_positive(env, "WEBCHAT_SESSIONS_WINDOW_SECONDS"),
            acs_endpoint=env.str("ACS_ENDPOINT").rstrip("/"),
            acs_access_key=env.str("ACS_ACCESS_KEY"),
            whatsapp_channel_id=env.str("WHATSAPP_CHANNEL_ID"),
            acs_sms_from=_phone_number(env, "ACS_SMS_FROM"),
            acs_emulator_port=env.int("ACS_EMULATOR_PORT"),
            gateway_port=gateway_port,
            gateway_public_url=(env.str("GATEWAY_PUBLIC_URL") or f"ws://127.0.0.1:{gateway_port}").rstrip("/"),
            gateway_host=env.str("GATEWAY_HOST"),
            gateway_end_of_turn_ms=_positive(env, "GATEWAY_END_OF_TURN_MS"),
            gateway_max_calls=_positive(env, "GATEWAY_MAX_CALLS"),
            gateway_preload_models=env.bool("GATEWAY_PRELOAD_MODELS"),
            gateway_stats_key=env.str("GATEWAY_STATS_KEY"),
            speech_endpoint=env.str("SPEECH_ENDPOINT").rstrip("/"),
            speech_region=env.str("SPEECH_REGION"),
            speech_key=env.str("SPEECH_KEY"),
            speech_voice=env.str("SPEECH_VOICE"),
            speech_language=env.str("SPEECH_LANGUAGE"),
            call_audio_sample_rate=sample_rate,
            call_token_ttl_seconds=_positive(env, "CALL_TOKEN_TTL_SECONDS"),
            call_media_token_ttl_seconds=_positive(env, "CALL_MEDIA_TOKEN_TTL_SECONDS"),
            acs_resource_immutable_id=env.str("ACS_RESOURCE_IMMUTABLE_ID"),
            acs_openid_configuration_url=env.str("ACS_OPENID_CONFIGURATION_URL"),
            telemetry=env.str("SWITCHBOARD_TELEMETRY"),
            summary_seconds=_not_negative(env, "SWITCHBOARD_SUMMARY_SECONDS"),
        )

    @property
    def uses_azure_speech(self) -> bool:
        """Azure AI Speech is configured: the media gateway's speech-to-text and TTS use it."""
        if self.speech_region and not self.speech_key:
            raise SettingsError("SPEECH_REGION needs SPEECH_KEY; with managed identity set SPEECH_ENDPOINT instead")
        return bool(self.speech_endpoint or self.speech_region)

    @property
    def uses_llm(self) -> bool:
        if self.policy == "offline":
            return False
        configured = bool(self.azure_openai_endpoint or self.openai_base_url)
        if self.policy == "openai" and not configured:
            raise SettingsError("SWITCHBOARD_POLICY=openai needs AZURE_OPENAI_ENDPOINT or OPENAI_BASE_URL")
        return configured


def _positive(env: _Reader, key: str) -> int:
    value = env.int(key)
    if value == 0:
        raise SettingsError(f"{key} must be more than 0")
    return value


def _phone_number(env: _Reader, key: str) -> str:
    value = env.str(key)
    if value and not re.fullmatch(r"\+[1-9]\d{6,14}", value):
        raise SettingsError(f"{key} must be an E.164 phone number like +18005550100, not {value!r}")
    return value


def _not_negative(env: _Reader, key: str) -> float:
    return env.float(key, allow_zero=True)


def _session_state(env: _Reader) -> str:
    choice = env.str("SESSION_STATE").lower()
    redis_url, cosmos_endpoint = env.str("REDIS_URL"), env.str("COSMOS_ENDPOINT")
    if choice == "auto":
        return "redis" if redis_url else "cosmos" if cosmos_endpoint else "sqlite"
    if choice not in ("sqlite", "memory", "redis", "cosmos"):
        raise SettingsError(f"SESSION_STATE must be auto, sqlite, memory, redis or cosmos, not {choice!r}")
    if choice == "redis" and not redis_url:
        raise SettingsError("SESSION_STATE=redis needs REDIS_URL")
    if choice == "cosmos" and not cosmos_endpoint:
        raise SettingsError("SESSION_STATE=cosmos needs COSMOS_ENDPOINT")
    return choice


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def str(self, key: str) -> str:
        return self._environ.get(key, SETTINGS[key][0]).strip()

    def int(self, key: str) -> int:
        raw = self.str(key)
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{key} must be a whole number, not {raw!r}") from None
        if value < 0:
            raise SettingsError(f"{key} must not be negative, got {value}")
        return value

    def float(self, key: str, *, allow_zero: bool = False) -> float:
        raw = self.str(key)
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{key} must be a number, not {raw!r}") from None
        # float() reads "nan" and "inf" too: a NaN timeout compares false with everything (never expires, never
        # refuses), and an infinite one waits forever, so neither is a number of seconds anyone meant.
        if not math.isfinite(value):
            raise SettingsError(f"{key} must be a finite number, not {raw!r}")
        if value < 0 or (value == 0 and not allow_zero):
            raise SettingsError(f"{key} must be {'0 or more' if allow_zero else 'positive'}, got {value}")
        return value

    def bool(self, key: str) -> bool:
        raw = self.str(key).lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{key} must be true or false, not {raw!r}")
