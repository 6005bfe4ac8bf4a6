"""The operators' bodies: the live queue metrics and their override, an outage's restoration, the success figures."""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

from functions.api.fields import Query, RequestBody, ResponseBody, Timestamp, query_int, whole_number
from shared.ops_metrics import DEFAULT_HOURS, MAX_HOURS

#: Bounds on what an operator may set or add: far past any real queue, well inside every store's integers.
LIMIT = 10_000_000

Count = Annotated[int, Field(ge=0, le=LIMIT)]
SetCount = whole_number(0, LIMIT)
Adjustment = whole_number(-LIMIT, LIMIT)


# The queue ---------------------------------------------------------------------------------------------------------


class QueueSet(RequestBody):
    waiting: SetCount = None
    in_progress: SetCount = None
    estimated_wait_seconds: Annotated[float, Field(ge=0, le=LIMIT, allow_inf_nan=False)] = None
    incident_customers: SetCount = None


class QueueAdjust(RequestBody):
    waiting: Adjustment = None
    in_progress: Adjustment = None


class QueueUpdate(RequestBody):
    """Set values, add to the counters, or drop pinned values (estimate, incident)."""

    set: QueueSet = QueueSet()
    adjust: QueueAdjust = QueueAdjust()
    clear_overrides: bool = False


class QueueFigures(ResponseBody):
    waiting: int | None
    in_progress: int | None
    estimated_wait_seconds: float | None
    incident_customers: int | None
    agents_available: int | None = Field(None, description="People on duty at the desk.")
    ringing: int | None = Field(None, description="Calls between IncomingCall and our answer.")
    overridden: bool = Field(None, description="An operator pinned or offset a figure here: not all of it is live.")
    known: bool = Field(description="False when the figures cannot be read: no switch is offered.")


class Thresholds(ResponseBody):
    queue_wait_threshold_seconds: float
    queue_depth_threshold: int
    mass_outage_threshold: int


class QueueView(ResponseBody):
    """The live queue metrics, the scenario's thresholds, and whether a phone caller is offered a switch."""

    queue: QueueFigures
    figures: str = Field(description=(
        "Whether the figures are live or an operator's override is in force (these endpoints are for demos and load "
        "tests), and how to go back to live."))
    thresholds: Thresholds
    switch_offered: bool
    reasons: list[str]


# Outages -----------------------------------------------------------------------------------------------------------


class OutageRestored(ResponseBody):
    """What telling us an outage is over did: the promised texts sent now, those sent by an earlier call (each goes
    once), and why any could not go (opted out, no number)."""

    outage: str
    sent: Count
    already_sent: Count
    not_sent: dict[str, Count] = Field(description="Reason -> how many customers were not texted for it.")


# The success figures -----------------------------------------------------------------------------------------------

N = Annotated[int, Field(ge=0, description="How many handoffs or conversations the figure is computed over.")]
Rate = Annotated[Annotated[float, Field(ge=0, le=1)] | None, Field(description="Null when n is 0.")]
Met = Annotated[bool | None, Field(description="Whether the target is met; null when n is 0.")]
Seconds = Annotated[float, Field(ge=0)] | None


class MetricsQuery(Query):
    model_config = ConfigDict(extra="forbid", frozen=True)  # an operator's misspelt `hour` must not read as 24

    hours: query_int(1, MAX_HOURS, f"The window: the last this many hours (default {DEFAULT_HOURS}).") = DEFAULT_HOURS


class Window(ResponseBody):
    """The window the figures cover."""

    hours: int = Field(ge=1, le=MAX_HOURS)
    from_: Timestamp = Field(alias="from")
    to: Timestamp


class ContextPreservation(ResponseBody):
    """Of handoffs continued on a new channel, those where that channel asked for nothing the record held when the
    customer accepted."""

    n: N
    preserved: Annotated[int, Field(ge=0)]
    rate: Rate
    target_rate: float
    met: Met
    reasked_slots: list[str] = Field(description="The slots asked for again.")
    target: str


class HandoffSuccess(ResponseBody):
    """Accepted handoffs whose new channel received a first message from the customer."""

    n: N
    succeeded: Annotated[int, Field(ge=0)]
    rate: Rate
    target_rate: float
    met: Met
    target: str


class ChannelSwitch(ResponseBody):
    """From the customer's yes to their first message on the new channel, over the handoffs that succeeded; the
    target is held to the p95."""

    n: N
    p50: Seconds
    p95: Seconds
    met: Met
    target: str


class TurnPercentiles(ResponseBody):
    """Customer messages to resolution: p50 and p95 by nearest rank; null when there is none."""

    p50: Annotated[int, Field(ge=0)] | None
    p95: Annotated[int, Field(ge=0)] | None


class SecondPercentiles(ResponseBody):
    """Seconds from the conversation's start to resolution: p50 and p95 by nearest rank; null when there is none."""

    p50: Seconds
    p95: Seconds


class Resolution(ResponseBody):
    """Conversations (a session and those continuing it) resolved: by the AI at its last reply giving a tool's
    result when not escalated, or by a person closing the escalation as resolved."""

    n: N
    resolved: Annotated[int, Field(ge=0)]
    rate: Rate
    turns: TurnPercentiles
    seconds: SecondPercentiles


class Escalations(ResponseBody):
    """Conversations handed to a person at the desk."""

    n: N
    escalated: Annotated[int, Field(ge=0)]
    rate: Rate


class Abandonment(ResponseBody):
    """Escalations the customer left before a person came."""

    n: N
    abandoned: Annotated[int, Field(ge=0)]
    rate: Rate


class OpsMetrics(ResponseBody):
    """The design's success figures over the window, from the customer records (docs/observability.md, 'Success
    figures')."""

    window: Window
    context_preservation: ContextPreservation
    handoff_success: HandoffSuccess
    channel_switch_seconds: ChannelSwitch
    resolution: Resolution
    escalations: Escalations
    abandonment: Abandonment
