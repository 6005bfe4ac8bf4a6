"""The record a running `python -m local` keeps, read straight from its SQLite file through the store adapter: the
same record the app writes, with no HTTP surface in between."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from shared.models import Channel, ChannelSession, Customer, Identity, IdentityKind
from shared.stores.embedded_customers import SqliteCustomerStore

T = TypeVar("T")


async def read_customers(data_dir: Path, read: Callable[[SqliteCustomerStore], Awaitable[T]]) -> T:
    """`read` on the host's customer store (under its SWITCHBOARD_DATA_DIR), closed after it."""
    store = SqliteCustomerStore(data_dir / "customers.sqlite3")
    try:
        return await read(store)
    finally:
        await store.close()


async def customer_by_phone(data_dir: Path, phone: str) -> Customer | None:
    """The customer who holds `phone`, if any."""
    return await read_customers(data_dir, lambda store: store.find_by_identity(Identity(IdentityKind.PHONE, phone)))


async def only_session(data_dir: Path, phone: str, channel: Channel) -> ChannelSession:
    """The one session on `channel` of the customer who holds `phone`."""
    customer = await customer_by_phone(data_dir, phone)
    assert customer is not None, f"no customer holds {phone}"
    sessions = [s for s in customer.sessions.values() if s.channel == channel]
    assert len(sessions) == 1, [s.session_id for s in sessions]
    return sessions[0]
