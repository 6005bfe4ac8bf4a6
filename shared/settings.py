"""Settings, read once from the environment (Azure app settings, local.settings.json Values, or the shell).

Every setting has a default that keeps the embedded, offline stack working; each Azure setting switches one adapter
to the real service. A value that cannot be read names its key. The README's configuration table mirrors SETTINGS.
"""

from __future__ import annotations

import os
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
    "REDIS_URL": ("", "Redis URL for hot session state (redis:// or rediss://). Empty: in-process state (one instance only)."),
    "SESSION_TTL_SECONDS": ("86400", "How long hot session state lives after its last use."),
    "AZURE_OPENAI_ENDPOINT": ("", "Azure OpenAI endpoint. Set: the OpenAI policy uses it."),
    "AZURE_OPENAI_DEPLOYMENT": ("gpt-4o-mini", "Azure OpenAI chat model deployment name."),
    "AZURE_OPENAI_API_VERSION": ("2024-10-21", "Azure OpenAI REST API version."),
    "AZURE_OPENAI_API_KEY": ("", "Azure OpenAI key. Empty: Entra ID (managed identity) through azure-identity."),
    "OPENAI_BASE_URL": ("", "Any OpenAI-compatible endpoint (used when AZURE_OPENAI_ENDPOINT is empty)."),
    "OPENAI_API_KEY": ("", "Key for OPENAI_BASE_URL."),
    "OPENAI_MODEL": ("gpt-4o-mini", "Model name for OPENAI_BASE_URL."),
    "LLM_TIMEOUT_SECONDS": ("20", "Timeout of one LLM request; on expiry the customer hears a fallback line."),
    "AZURE_CLIENT_ID": ("", "Client id of the user-assigned managed identity that azure-identity should use."),
    "SWITCHBOARD_TOKEN_SECRET": ("", "HMAC secret for signed tokens (web chat sessions, handoff links, media gateway URLs). Empty: a random one kept in SWITCHBOARD_DATA_DIR (local only)."),
    "WEBCHAT_TOKEN_TTL_SECONDS": ("86400", "Lifetime of a web chat session token."),
    "WEBCHAT_MAX_MESSAGE_CHARS": ("2000", "Longest customer message accepted by web chat."),
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
    webchat_max_message_chars: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Reader(os.environ if environ is None else environ)
        data_dir = Path(env.str("SWITCHBOARD_DATA_DIR"))
        port = env.int("PORT")
        policy = env.str("SWITCHBOARD_POLICY").lower()
        if policy not in ("auto", "offline", "openai"):
            raise SettingsError(f"SWITCHBOARD_POLICY must be auto, offline or openai, not {policy!r}")
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
            webchat_max_message_chars=env.int("WEBCHAT_MAX_MESSAGE_CHARS"),
        )

    @property
    def uses_llm(self) -> bool:
        if self.policy == "offline":
            return False
        configured = bool(self.azure_openai_endpoint or self.openai_base_url)
        if self.policy == "openai" and not configured:
            raise SettingsError("SWITCHBOARD_POLICY=openai needs AZURE_OPENAI_ENDPOINT or OPENAI_BASE_URL")
        return configured


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

    def float(self, key: str) -> float:
        raw = self.str(key)
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{key} must be a number, not {raw!r}") from None
        if value <= 0:
            raise SettingsError(f"{key} must be positive, got {value}")
        return value

    def bool(self, key: str) -> bool:
        raw = self.str(key).lower()
        if raw in ("1", "true", "yes", "on"):
            return True
        if raw in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{key} must be true or false, not {raw!r}")
