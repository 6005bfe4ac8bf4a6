"""Storage ports and the factories that pick an adapter from the settings.

Each Azure SDK is imported inside its branch: a cold start pays only for the backends actually configured, and the
embedded stack imports neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.stores.base import CustomerStore, SessionState
from shared.stores.records import RecordLimits

if TYPE_CHECKING:
    from shared.settings import Settings

__all__ = ["CustomerStore", "RecordLimits", "SessionState", "build_customer_store", "build_session_state"]


def build_customer_store(settings: Settings) -> CustomerStore:
    """Cosmos DB when COSMOS_ENDPOINT is set, else SQLite under the data folder. Does no I/O."""
    limits = record_limits(settings)
    if settings.cosmos_endpoint:
        from shared.stores.azure_cosmos import CosmosCustomerStore

        return CosmosCustomerStore.from_settings(settings, limits)
    from shared.stores.embedded_customers import SqliteCustomerStore

    return SqliteCustomerStore(settings.data_dir / "customers.sqlite3", limits)


def record_limits(settings: Settings) -> RecordLimits:
    """How big a customer record grows and how long what leaves it is kept, from the settings."""
    return RecordLimits(
        session_index_max=settings.session_index_max,
        session_retention_seconds=settings.session_retention_days * 86400,
        anonymous_ttl_seconds=settings.anonymous_customer_ttl_seconds,
        idle_session_seconds=settings.session_ttl_seconds,
    )


def build_session_state(settings: Settings) -> SessionState:
    """As SESSION_STATE says (auto: Redis if REDIS_URL, else Cosmos if COSMOS_ENDPOINT, else SQLite). Does no I/O.

    SQLite is the embedded default, shared by the local processes (host, gateway); memory is right for one process
    only; Cosmos serves deployments without Redis.
    """
    if settings.session_state == "redis":
        from shared.stores.azure_redis import RedisSessionState, signs_in_with_entra

        if signs_in_with_entra(settings.redis_url):
            from azure.identity.aio import DefaultAzureCredential  # only the keyless path needs azure-identity

            credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None)
            return RedisSessionState(settings.redis_url, credential)
        return RedisSessionState(settings.redis_url)
    if settings.session_state == "cosmos":
        from shared.stores.azure_cosmos_state import CosmosSessionState

        return CosmosSessionState.from_settings(settings)
    if settings.session_state == "sqlite":
        from shared.stores.embedded_sqlite_state import SqliteSessionState

        return SqliteSessionState(settings.data_dir / "state.sqlite3")
    from shared.stores.embedded_state import InProcessSessionState

    return InProcessSessionState()
