"""The wait for a person: the estimate the channel offer and the customer's "you're number 3" are made from.

The formula (docs/desk.md has it with worked examples):

    position p   the customer's place in the queue (1 = next)
    on duty  N   people signed in at the desk and set available (busy with a customer or not)
    free     F   of those, how many have nobody right now
    AHT          average handle time: the mean of the desk's recent conversations, or the scenario's default

    wait(p) = 0                      if p <= F   (someone is free for them)
            = (p - F) x AHT / N      otherwise   (the ones ahead, shared among everyone on duty)
            = unknown                if N == 0   (nobody is on duty: no honest number exists)

It is the simple "waiting x average handle time / agents" rule, not Erlang C: Erlang C needs an arrival rate and
assumes a steady state, and a desk of two to ten people on a quiet line has neither. The rule answers what a customer
asks ("how long for me?") from what the desk can count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DeskLoad:
    """What the estimate is made from, as counted at one moment."""

    waiting: int  # customers in the queue for a person (escalations not yet claimed, calls on hold)
    on_duty: int  # people available at the desk, busy or not
    free: int  # of those, people with nobody right now
    handle_seconds: float  # the average handle time in use

    def wait_for(self, position: int) -> float | None:
        """The estimated wait, in seconds, of the customer at `position` (1 = next); None if nobody is on duty."""
        return estimate_wait(position, self.on_duty, self.free, self.handle_seconds)

    @property
    def next_wait(self) -> float | None:
        """The wait of a customer who joined the queue now."""
        return self.wait_for(self.waiting + 1)


def estimate_wait(position: int, on_duty: int, free: int, handle_seconds: float) -> float | None:
    if position < 1:
        raise ValueError("a queue position starts at 1")
    if on_duty <= 0:
        return None
    free = max(0, min(free, on_duty))
    if position <= free:
        return 0.0
    return (position - free) * handle_seconds / on_duty


def spoken_wait(seconds: float | None) -> str:
    """A wait as a person would say it: "under a minute", "about 4 minutes", "about an hour"."""
    if seconds is None:
        return "a while"
    if seconds < 60:
        return "under a minute"
    minutes = math.ceil(seconds / 60)
    if minutes == 1:
        return "about a minute"
    if minutes < 55:
        return f"about {minutes} minutes"
    hours = round(minutes / 60)
    return "about an hour" if hours <= 1 else f"about {hours} hours"
