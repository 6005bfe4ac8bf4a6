"""The Cosmos DB emulator for the tests: `@vercel/cosmosdb-server` from npm (`make setup` installs it), run with node.

It keeps everything in memory, speaks HTTPS with a self-signed certificate (clients pass verify_tls=False) and takes
the well-known emulator key. It is good enough for what our adapters use (CRUD, ETag conditions, queries, and
transactional batches once `cosmos_emulator.js` beside this file fills in their partition key); it has no TTL, does
not roll back a failed batch's earlier operations, and answers 500 instead of 404 when a missing item is read.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers import free_port, unavailable

#: The key every Cosmos DB emulator accepts (published by Microsoft; not a secret).
EMULATOR_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
CLI = Path(__file__).resolve().parent / "node_modules" / "@vercel" / "cosmosdb-server" / "lib" / "cli.js"
#: What node runs: the package's CLI with transactional batches made to work (see the file).
LAUNCHER = Path(__file__).resolve().parent / "cosmos_emulator.js"
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class CosmosEmulator:
    endpoint: str
    key: str = EMULATOR_KEY


@pytest.fixture(scope="session")
def cosmos_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CosmosEmulator]:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed, so the Cosmos DB emulator cannot run: install Node.js 18+ and `make setup`")
    if not CLI.exists():
        unavailable("the Cosmos DB emulator (@vercel/cosmosdb-server) is not installed; run `make setup`")
    port = free_port()
    # Output to a file: it logs a stack trace for every 500 it answers, and an unread pipe would fill and stall it.
    log_path = tmp_path_factory.mktemp("cosmos-emulator") / "emulator.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [node, str(LAUNCHER), "-p", str(port), "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_listening(process, port, log_path)
        yield CosmosEmulator(endpoint=f"https://127.0.0.1:{port}")
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_listening(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"the Cosmos DB emulator exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"the Cosmos DB emulator did not listen on port {port} within {START_TIMEOUT:.0f}s")
            time.sleep(0.05)
