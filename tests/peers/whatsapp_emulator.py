"""The ACS emulator with only its Advanced Messaging module, started in this process: the WhatsApp side the
verification, keypad and Foundry race tests send codes and replies to. Delivery reports are held back (a status
step of an hour), so a test reads each message as sent, and nothing calls the Functions host it names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from local.acs.messages import CHANNEL_ID, MessagesApi
from local.acs.server import AcsEmulator, EmulatorService
from tests.peers import free_port


@asynccontextmanager
async def whatsapp_emulator(access_key: str) -> AsyncIterator[EmulatorService]:
    service = EmulatorService(AcsEmulator(access_key=access_key, functions_url=f"http://127.0.0.1:{free_port()}",
                                          modules=[MessagesApi(CHANNEL_ID, status_step=3600)]), free_port())
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
