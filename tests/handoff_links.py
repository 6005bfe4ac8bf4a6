"""The web chat link a handoff sent a customer, read from their phone's messages (local/handoff_links.py, shared
with the evals)."""

from __future__ import annotations

from local.handoff_links import _unverified_claims, sent_link  # noqa: F401 - the tests import these names from here
