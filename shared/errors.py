"""Domain errors. They carry a `retryable` flag and become HTTP codes only at the entrypoints."""

from __future__ import annotations


class SwitchboardError(Exception):
    """Base of every error the domain raises on purpose."""

    retryable = False


class NotFound(SwitchboardError):
    """The thing asked for does not exist (a customer, a session)."""


class Conflict(SwitchboardError):
    """An optimistic-concurrency write lost against another writer; re-read and try again."""

    retryable = True


class Unavailable(SwitchboardError):
    """A backing service (store, cache, LLM) is unreachable or throttling; try again later."""

    retryable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InvalidInput(SwitchboardError):
    """The caller sent something we cannot accept; the message says what."""


class SessionClosed(SwitchboardError):
    """The session has ended or moved to another channel; the customer must start or resume elsewhere."""


class Unauthorized(SwitchboardError):
    """A missing, forged, expired or misdirected credential."""


class ScenarioError(SwitchboardError):
    """A scenario definition is malformed; the message names the file and the key."""
