"""The Repeatability-First-Sent time of a send to ACS (WhatsApp and SMS), chosen so ACS never refuses it as too old.

ACS recognises a repeated request by its Repeatability-Request-ID only for five minutes after the request's
first-sent time, and refuses a request whose first-sent time is older than that with 412, which a sender can only
take as permanent (docs/reliability.md, "Repeatable sends"). Our senders are told when a message was *decided*
(a reply's time on the record, a handoff's start), which for a held reply, a handoff reminder or a send after a long
outage is long past. So each attempt keeps the time it is given only while ACS still tracks it, with a margin for
clocks that disagree a little; otherwise the attempt goes with now. A send's retries pass the time their first
attempt used, so they repeat it exactly and ACS answers a repeat with the first answer.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

#: How long ACS tracks a repeatable request from its first-sent time (docs/reliability.md, "Repeatable sends").
TRACKED = timedelta(minutes=5)
#: How much of that we use: a first-sent time older than this goes as now. The minute left over covers our clock
#: running behind ACS's, and a retry that has to restamp before the five minutes are up.
KEEP = TRACKED - timedelta(minutes=1)


def first_sent(given: datetime, now: datetime | None = None) -> datetime:
    """`given` while ACS still tracks a request first sent then (less the margin), otherwise `now`. A time ahead
    of ours by as much (another host's clock, far off) is not trusted either."""
    now = now or datetime.now(timezone.utc)
    given = given if given.tzinfo is not None else given.replace(tzinfo=timezone.utc)
    return given if abs(now - given) < KEEP else now
