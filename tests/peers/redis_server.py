"""A real Redis for the tests: `redis_url` (shared by the session), and `redis_server` / `start_redis_server` for a
test that needs one of its own, e.g. to kill it mid-run and bring it back on the same port.

TEST_REDIS_URL points the session at an existing server instead (a CI service); otherwise we start `redis-server`
from PATH with persistence off, so it leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.peers import free_port, unavailable

START_TIMEOUT = 10.0


class RedisServerFailed(RuntimeError):
    """redis-server exited or never answered PING; the message carries its output."""


class RedisServer:
    """One redis-server process on 127.0.0.1. `stop()` or `kill()` takes it down; `start()` brings it back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self._output = tempfile.TemporaryFile()  # a file, not a pipe: nobody reads it, and a full pipe would block

    def start(self, timeout: float = START_TIMEOUT) -> RedisServer:
        if self.running:
            return self
        self.process = subprocess.Popen(
            ["redis-server", "--save", "", "--appendonly", "no", "--port", str(self.port), "--bind", "127.0.0.1"],
            stdout=self._output,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not _answers_ping(self.port):
            if self.process.poll() is not None:
                self.process = None
                raise RedisServerFailed(f"redis-server on port {self.port} exited:\n{self._tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RedisServerFailed(f"redis-server on port {self.port} did not answer PING in {timeout:.0f}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM)."""
        self._end(kill=False)

    def kill(self) -> None:
        """Abrupt death (SIGKILL), as in an outage: clients see their connections reset."""
        self._end(kill=True)

    def close(self) -> None:
        self.stop()
        self._output.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _end(self, kill: bool) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def _tail(self) -> str:
        self._output.seek(0)
        return self._output.read()[-4000:].decode(errors="replace")


def start_redis_server(port: int | None = None) -> RedisServer:
    """Start a fresh redis-server on `port` (or a free one). Skips locally, fails in CI, when it is not installed."""
    if shutil.which("redis-server") is None:
        unavailable("redis-server is not installed (apt-get install -y redis-server), so the Redis tests cannot run")
    attempts = 1 if port else 3  # a free port can be taken between our probe and redis binding it
    for attempt in range(attempts):
        server = RedisServer(port or free_port())
        try:
            return server.start()
        except RedisServerFailed:
            server.close()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis shared by the whole session. Tests use random keys, so they do not see each other's data."""
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    server = start_redis_server()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis of this test's own, free to be killed and restarted (`kill()`, then `start()`); gone at the end."""
    server = start_redis_server()
    try:
        yield server
    finally:
        server.close()
