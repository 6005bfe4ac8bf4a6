"""Journeys as data: a customer's goal, persona, channel and lines, and what success means. Format: docs/evals.md."""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

JOURNEYS_DIR = Path(__file__).parent / "journeys"
CHANNELS = ("webchat", "whatsapp", "voice")


class JourneyError(ValueError):
    """A journey file that does not follow the format: the message names the file and the field."""


@dataclass(frozen=True)
class Line:
    """One step of the customer's: say one of `say` (paraphrases), answer a verification check as the holder of
    `verify`, or follow the accepted channel switch to `follow`."""

    say: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()  # each must be in the agent's reply to this line (case-insensitive)
    reject: tuple[str, ...] = ()  # none may be
    verify: str = ""  # an account (number, phone or policy): answered only if the agent just asked to verify
    follow: str = ""  # a channel: the switch the customer accepted, followed through the handoff's steps


@dataclass(frozen=True)
class Success:
    tools: tuple[str, ...] = ()  # tool outcomes the journey must reach (a reply that gives the tool's result)
    says: tuple[str, ...] = ()  # facts the agent must state at some point
    never: tuple[str, ...] = ()  # facts it must never state (a contradiction, another customer's data)
    escalated: bool | None = None  # whether the customer ends up with a person (None: either)
    switch: str = ""  # the channel the customer must be moved to
    max_turns: int = 8  # customer messages to resolution, at most


@dataclass(frozen=True)
class Journey:
    id: str
    scenario: str
    goal: str
    persona: str
    channel: str
    lines: tuple[Line, ...]
    success: Success
    phone: str = ""  # the number the channel vouches for: a caller ID, a WhatsApp sender
    queue: dict[str, Any] = field(default_factory=dict)  # the phone queue's figures during the journey
    path: str = ""


def load(pattern: str = "*/*.yaml") -> list[Journey]:
    """The journeys whose files match `pattern` under evals/journeys/ (or as a path), in file order."""
    paths = sorted(glob.glob(str(JOURNEYS_DIR / pattern))) or sorted(glob.glob(pattern))
    if not paths:
        raise JourneyError(f"no journey files match {pattern!r} (under {JOURNEYS_DIR})")
    return [parse(Path(p)) for p in paths]


def parse(path: Path) -> Journey:
    where = str(path)
    body = yaml.safe_load(path.read_text())
    _keys(body, {"scenario", "goal", "persona", "channel", "phone", "queue", "lines", "success"}, where,
          {"scenario", "goal", "persona", "channel", "lines", "success"})
    channel = body["channel"]
    if channel not in CHANNELS:
        raise JourneyError(f"{where}: channel must be one of {CHANNELS}, not {channel!r}")
    phone = str(body.get("phone") or "")
    if channel in ("voice", "whatsapp") and not phone:
        raise JourneyError(f"{where}: a {channel} journey needs the phone number the channel vouches for")
    lines = tuple(_line(raw, f"{where}: lines[{i}]") for i, raw in enumerate(body["lines"] or []))
    if not lines:
        raise JourneyError(f"{where}: lines: a journey needs at least one line")
    success = body["success"] or {}
    _keys(success, set(Success.__dataclass_fields__), f"{where}: success")
    return Journey(
        id=f"{path.parent.name}/{path.stem}", scenario=str(body["scenario"]), goal=str(body["goal"]),
        persona=str(body["persona"]), channel=channel, lines=lines, phone=phone, queue=dict(body.get("queue") or {}),
        success=Success(**{k: tuple(v) if isinstance(v, list) else v for k, v in success.items()}), path=where,
    )


def _line(raw: Any, where: str) -> Line:
    if isinstance(raw, str):
        return Line(say=(raw,))
    if isinstance(raw, list):
        return Line(say=tuple(str(s) for s in raw))
    if not isinstance(raw, dict):
        raise JourneyError(f"{where}: a line is a sentence, a list of paraphrases, or a mapping")
    _keys(raw, {"say", "expect", "reject", "verify", "follow"}, where)
    say = raw.get("say") or ()
    line = Line(say=(say,) if isinstance(say, str) else tuple(say), expect=tuple(raw.get("expect") or ()),
                reject=tuple(raw.get("reject") or ()), verify=str(raw.get("verify") or ""),
                follow=str(raw.get("follow") or ""))
    if sum(bool(x) for x in (line.say, line.verify, line.follow)) != 1:
        raise JourneyError(f"{where}: a line has exactly one of say, verify, follow")
    if line.follow and line.follow not in CHANNELS:
        raise JourneyError(f"{where}: follow must be one of {CHANNELS}")
    return line


def _keys(body: Any, allowed: set[str], where: str, required: set[str] = frozenset()) -> None:
    if not isinstance(body, dict):
        raise JourneyError(f"{where}: expected a mapping")
    if unknown := set(body) - allowed:
        raise JourneyError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if missing := required - set(body):
        raise JourneyError(f"{where}: missing {sorted(missing)}")
