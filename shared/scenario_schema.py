"""The scenario.yaml format as pydantic models: what each key holds, its default and what it means.

`validate` turns a parsed scenario.yaml into a `ScenarioFile` or raises ScenarioError listing every problem as
`<file>: <path inside it>: <what was expected>` (`agents.BillingAgent.tools[2]: no tool named 'teleport'`).
shared/scenario.py builds the runtime objects from it. The tables in docs/scenarios.md are generated from these
models (`python -m shared.scenario_schema` rewrites them; tests/scenarios/test_docs.py fails when they differ).

This module imports pydantic (~80 ms): shared/scenario.py imports it when a scenario is loaded, not at the function
app's import.
"""

from __future__ import annotations

import re
import string
import sys
import types
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator, model_validator,
)
from pydantic.fields import FieldInfo

from shared.errors import ScenarioError
from shared.models import Verification
from shared.scenario import (
    DEFAULT_GOODBYE,
    DEFAULT_NON_TEXT_REPLY,
    DEFAULT_REPROMPT,
    SILENCE_SECONDS,
    DeskSpec,
    Omnichannel,
    VerificationSpec,
    VoiceSpec,
)

Loc = tuple[str | int, ...]

#: Phrases every scenario words its own way; the rest (desk lines, follow-ups, ...) are optional.
REQUIRED_PHRASES = (
    "clarify", "fallback", "farewell", "thanks", "anything_else",
    "switch_offer", "switch_accepted", "switch_declined", "switch_unavailable",
)
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# What each WhatsApp message's parameters may name besides {company} and slots.
TEMPLATE_FIELDS: dict[str, frozenset[str]] = {
    "template": frozenset(), "invite": frozenset({"summary"}), "link_invite": frozenset({"summary", "link"}),
    "reminder": frozenset({"summary", "link"}), "code": frozenset({"code"}),
}

#: Words a person or a model reads: surrounding space is dropped, and nothing left is an error.
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _matches(pattern: str, expected: str) -> AfterValidator:
    """A check that the whole value matches `pattern`, failing with `expected` and the value."""
    def check(value: str) -> str:
        if not re.fullmatch(pattern, value):
            raise ValueError(f"{expected}, not {value!r}")
        return value
    return AfterValidator(check)


def _fields_named(text: str) -> set[str]:
    """The {placeholders} `text` names; ValueError for a lone brace."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


class Section(BaseModel):
    """A mapping in scenario.yaml: only its own keys, values of the declared type (no 'yes' for true, no 5 for '5')."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, body: Any) -> Any:
        # One message with the allowed keys beats one "extra inputs are not permitted" per key; and a key left
        # empty in YAML (`desk:`) means its default, as it always has.
        if not isinstance(body, dict):
            raise ValueError(f"expected a mapping, got {_brief(body)}")
        allowed = {info.alias or name for name, info in cls.model_fields.items()}
        if unknown := set(body) - allowed:
            raise ValueError(f"unknown key(s) {sorted(map(str, unknown))}; allowed: {sorted(allowed)}")
        return {key: value for key, value in body.items() if value is not None}


# Slots, tools, intents, agents ------------------------------------------------------------------------------------


class Slot(Section):
    """A fact collected once and kept on the customer record."""

    description: NonEmpty = Field(description="what it is (the LLM sees it in tool schemas)")
    ask: NonEmpty = Field(description="the question an agent asks for it")
    pattern: str | None = Field(None, description="a regex (case-insensitive) that finds it in the customer's words; "
                                                   "group 1 if present")
    kind: Literal["text", "digits", "phone", "title"] = Field(
        "text", description="how a found value is normalised: `phone` is E.164 (North American numbers get +1), "
                            "`title` capitalises each word")
    choices: dict[str, Annotated[list[NonEmpty], Field(min_length=1)]] = Field(
        {}, description="instead of a pattern: value → words that mean it (`move: [move, moving, relocate]`)")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regex: {exc}") from None
        return pattern


class Parameter(Section):
    """A tool parameter: a slot (filled from the record) or a value the LLM gives."""

    slot: str | None = Field(None, description="the slot this parameter is; the runtime fills it from the record")
    type: Literal["string", "integer", "number", "boolean"] | None = Field(
        None, description="for a parameter that is not a slot: its JSON Schema type")
    description: str | None = Field(None, description="for a parameter that is not a slot: what the LLM should give")
    enum: list[str | int | float] | None = Field(None, description="the only values allowed, if any")

    @model_validator(mode="after")
    def _slot_or_description(self) -> Parameter:
        if self.slot is None and self.description is None:
            raise ValueError("give a slot, or a type and a description")
        return self


class Requirement(Section):
    """At least one of a group of parameters, known before the tool runs."""

    any_of: list[str] = Field(min_length=1, description="parameters of the tool; one of them must be known")
    ask: NonEmpty = Field(description="the question when none is")


class Tool(Section):
    """A function in the scenario's tools.py that an agent may call."""

    description: NonEmpty = Field(description="what the tool does (the LLM's function description)")
    parameters: dict[str, Parameter] = Field({}, description="name → parameter (below)")
    requires: list[Requirement] = Field([], description="groups of parameters, one of each known before it runs "
                                                        "(below)")
    keywords: list[NonEmpty] = Field([], description="words that make the offline policy pick this tool among its "
                                                     "agent's tools")
    verification: Annotated[Verification, Field(strict=False)] = Field(
        Verification.UNVERIFIED, description="what the customer must have shown before it runs (Verification below)")


class Intent(Section):
    """What a customer may want, for the offline policy's routing."""

    examples: list[NonEmpty] = Field([], description="sentences a customer with this intent says")
    keywords: dict[str, float] = Field(
        {}, description="word or phrase → weight (a plain list weighs each 1); stems match (`overcharg`)")
    summary: str = Field("", description="how a handoff summary names this topic; may name `{company}` and slots "
                                         "(`{service_address}`)")

    @field_validator("keywords", mode="before")
    @classmethod
    def _list_weighs_one(cls, keywords: Any) -> Any:
        if isinstance(keywords, list) and all(isinstance(k, str) for k in keywords):
            return {k: 1.0 for k in keywords}
        return keywords


class Handoff(Section):
    """An edge from one agent to another."""

    to: str = Field(description="the agent handed to")
    mode: Literal["announced", "discrete"] = Field(
        "announced", description="`announced`: the target greets, then handles the message; `discrete`: the target "
                                 "just continues")
    when: NonEmpty = Field(description="when to take it, in words; the LLM's handoff-tool description")


class Agent(Section):
    """One AI agent: its words, what it handles, what it may call and whom it may hand over to."""

    title: NonEmpty = Field(description="how the agent names itself (\"Billing\")")
    greeting: NonEmpty = Field(description="said when the agent opens a session or takes an **announced** handoff")
    instructions: NonEmpty = Field(description="the system prompt for the OpenAI policy")
    intents: list[str] = Field([], description="the intents this agent handles (an intent belongs to at most one "
                                               "agent)")
    slots: list[str] = Field([], description="the slots this agent collects (choice slots are only read from the "
                                             "customer's words by an agent that lists them)")
    tools: list[str] = Field([], description="the tools it may call")
    handoffs: list[Handoff] = Field([], description="its edges to other agents (below); it hands over only along "
                                                    "these")


# Channels, desk, verification, voice ------------------------------------------------------------------------------


class Channels(Section):
    """When the agent offers to continue on another channel (shared/router.py)."""

    queue_wait_threshold_seconds: float = Field(
        Omnichannel.queue_wait_threshold_seconds, gt=0, description="a wait for a person over this offers a switch")
    queue_depth_threshold: int = Field(Omnichannel.queue_depth_threshold, ge=0,
                                       description="more customers waiting than this offers a switch")
    mass_outage_threshold: int = Field(Omnichannel.mass_outage_threshold, ge=0,
                                       description="an incident affecting more customers than this offers a switch")
    alternate_channels: list[Literal["whatsapp", "webchat"]] = Field(
        list(Omnichannel.alternate_channels), description="what a customer may switch to, best first")


class TemplateParameter(Section):
    """One body parameter of a WhatsApp template, in the template's order."""

    name: NonEmpty = Field(description="the parameter's name")
    text: str = Field(description="its text; may name `{company}`, slots and the message's own fields")
    fallback: str = Field("", description="the text when a slot it names is not on the record (required if it "
                                          "names one)")


class Template(Section):
    """An approved WhatsApp template."""

    name: Annotated[str, _matches(r"[a-z0-9_]+", "WhatsApp template names are lowercase letters, digits and _")] = (
        Field(description="as approved in WhatsApp Manager: lowercase letters, digits and _"))
    language: Annotated[str, _matches(r"[a-z]{2,3}(_[A-Z]{2})?", "a WhatsApp language code like en_US")] = Field(
        description="its language code, like `en_US`")
    parameters: list[TemplateParameter] = Field([], description="the body's {{1}}, {{2}}, ... in order (below)")


class WhatsApp(Section):
    """The WhatsApp channel's templates and words."""

    template: Template | None = Field(None, description="sent outside the 24-hour window, inviting the customer back "
                                                         "(none: nothing can be sent then)")
    non_text_reply: NonEmpty = Field(DEFAULT_NON_TEXT_REPLY, description="the answer to an image, voice note, video, "
                                     "location or sticker", json_schema_extra={"shown": "a sentence asking for words"})
    invite: Template | None = Field(None, description="channel handoff: \"continue here on WhatsApp\"; may also "
                                                      "name `{summary}`")
    link_invite: Template | None = Field(None, description="channel handoff: \"continue in your browser\"; may also "
                                                           "name `{summary}` and `{link}`")
    reminder: Template | None = Field(None, description="the one nudge when the customer has not come yet; may also "
                                                        "name `{summary}` and `{link}`")
    code: Template | None = Field(None, description="the authentication template verification codes go by when no "
                                                    "SMS number is configured; may also name `{code}` (none, and no "
                                                    "SMS: only the knowledge questions can be asked)")


class Desk(Section):
    """When the AI hands a customer to the people at the desk."""

    safety_words: list[NonEmpty] = Field(
        [], description="words or phrases (matched anywhere in a message, case and spacing ignored) that go straight "
                        "to a person before any agent answers")
    failed_attempts: int = Field(DeskSpec.failed_attempts, ge=1,
                                 description="tool calls in a row that got nowhere (`ok=False`) before a person "
                                             "takes over (a call that works resets the count)")
    default_handle_seconds: float = Field(
        DeskSpec.default_handle_seconds, gt=0, description="how long a conversation with a person is assumed to take "
                                                           "until the desk has closed some of its own; the wait a "
                                                           "customer is told is estimated from it")


class KnowledgeQuestion(Section):
    """A question only the account holder can answer."""

    answer: NonEmpty = Field(description="the value of the holder it checks (a key of `Holder.answers`)")
    ask: NonEmpty = Field(description="how the agent names it: \"the ZIP code of the service address\"")
    digits: bool = Field(False, description="the answer is a number (a ZIP code) a caller may key on the phone on "
                                            "its own: it is then kept for the rest of the answer rather than checked "
                                            "alone")


class VerificationRules(Section):
    """How customers prove an account is theirs before a tool shows it."""

    methods: list[Literal["code", "knowledge"]] = Field(
        list(VerificationSpec.methods), min_length=1,
        description="in the order offered; the next is used when a code cannot go, or the number has had "
                    "`codes_per_hour`")
    code_length: int = Field(VerificationSpec.code_length, ge=4, le=10, description="the one-time code's digits")
    code_ttl_seconds: float = Field(VerificationSpec.code_ttl_seconds, gt=0, description="the code's lifetime")
    attempts: int = Field(VerificationSpec.attempts, ge=1,
                          description="wrong answers per account holder, across sessions and channels, before the "
                                      "holder is locked for `lock_seconds`")
    lock_seconds: float = Field(VerificationSpec.lock_seconds, gt=0, description="how long a lock lasts")
    codes_per_hour: int = Field(VerificationSpec.codes_per_hour, ge=1,
                                description="codes one number may be sent an hour")
    knowledge: list[KnowledgeQuestion] = Field([], description="questions, answered together (below)")
    account_slots: list[str] = Field(
        [], description="the slots that name an account: a gated tool called with none of them (an outage at an "
                        "address the customer typed) runs unchecked (empty: every call is checked)")

    @model_validator(mode="after")
    def _knowledge_has_questions(self) -> VerificationRules:
        if "knowledge" in self.methods and not self.knowledge:
            raise ValueError("the knowledge method needs questions under knowledge")
        return self


def _said(text: str) -> str:
    """A sentence the agent says, naming at most {company}."""
    if not text.strip():
        raise ValueError("expected a sentence the agent says")
    named = _fields_named(text)
    if named - {"company"}:
        raise ValueError(f"may name only {{company}}, not {sorted(named - {'company'})}")
    return text.strip()


class Voice(Section):
    """What a call does when the caller says nothing."""

    silence_reprompt_seconds: float = Field(
        VoiceSpec.silence_reprompt_seconds,
        description=f"how long the line waits on the caller, once the agent's audio has played, before the reprompt; "
                    f"the same again after the reprompt before the goodbye (from {SILENCE_SECONDS[0]:g} to "
                    f"{SILENCE_SECONDS[1]:g})")
    reprompt: str = Field(DEFAULT_REPROMPT, description="said after the first silence; may name `{company}`")
    goodbye: str = Field(DEFAULT_GOODBYE, description="said after a second silence in a row, then the call ends and "
                                                      "is recorded as abandoned; may name `{company}`",
                         json_schema_extra={"shown": "a sentence saying so and thanking them"})

    vocabulary: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=60,
        description="names and words callers say that speech-to-text should expect (streets, towns, people, products); "
                    "the offline recogniser is prompted with them, Azure Speech gets them as a phrase list "
                    "(docs/voice.md, \"Words the recogniser expects\")")

    @field_validator("silence_reprompt_seconds")
    @classmethod
    def _in_range(cls, seconds: float) -> float:
        # Under a second cuts off a caller drawing breath; a line held open for minutes costs a call slot.
        low, high = SILENCE_SECONDS
        if not low <= seconds <= high:
            raise ValueError(f"expected a number of seconds from {low:g} to {high:g}, got {seconds:g}")
        return seconds

    @field_validator("reprompt", "goodbye")
    @classmethod
    def _sentence(cls, text: str) -> str:
        return _said(text)


# The file ---------------------------------------------------------------------------------------------------------


class ScenarioFile(Section):
    """scenario.yaml."""

    name: NonEmpty = Field(description="short name")
    company: NonEmpty = Field(description="the business's name; phrases can use `{company}`")
    start_agent: str = Field(description="the agent that greets every new session")
    agents: dict[str, Agent] = Field(min_length=1, description="name → agent (below)")
    slots: dict[str, Slot] = Field({}, description="name → slot (below)")
    tools: dict[str, Tool] = Field({}, description="name → tool (below); each needs a function in tools.py")
    intents: dict[str, Intent] = Field({}, description="name → intent (below); the offline policy routes by them")
    phrases: dict[str, str] = Field(description="the agent's own lines by name (Phrases below); open: a scenario may "
                                                "word any line the product says its way")
    escalation: str = Field("", description="the human team's phone number, quoted E.164 (`\"+15555550199\"`): where "
                                            "a call is transferred when a person is needed (empty: never)")
    omnichannel: Channels = Field(Channels(), description="when to offer another channel (below)")
    whatsapp: WhatsApp = Field(WhatsApp(), description="the WhatsApp channel's templates and words (below)")
    desk: Desk = Field(Desk(), description="when the AI hands a customer to the people at the desk (below)")
    verification: VerificationRules = Field(VerificationRules(), description="how customers prove an account is "
                                                                             "theirs (below)")
    voice: Voice = Field(Voice(), description="what a call does when the caller says nothing (below)")
    timezone: str = Field("America/New_York", description="the IANA time zone the business keeps: a callback asked "
                                                          "for \"at 3 pm\" is at 3 pm on this clock")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"not an IANA time zone name like 'America/Chicago': {_brief(name)}") from None
        return name

    @field_validator("phrases")
    @classmethod
    def _required_phrases(cls, phrases: dict[str, str]) -> dict[str, str]:
        if missing := [p for p in REQUIRED_PHRASES if p not in phrases]:
            raise ValueError(f"missing the required phrase(s) {missing}")
        return phrases

    @field_validator("escalation", mode="before")
    @classmethod
    def _e164(cls, number: Any) -> Any:
        if number != "" and not (isinstance(number, str) and _E164.match(number)):
            raise ValueError(f"expected a quoted E.164 phone number like '+15555550199', got {_brief(number)}")
        return number


# Names that point nowhere -----------------------------------------------------------------------------------------


def dangling(spec: ScenarioFile) -> list[tuple[Loc, str]]:
    """References to agents, tools, slots, intents and parameters the file does not define, with where they are."""
    problems: list[tuple[Loc, str]] = []

    def known(loc: Loc, name: str, kind: str, names: Any) -> None:
        if name not in names:
            problems.append((loc, f"no {kind} named {name!r}; the {kind}s are {sorted(names)}"))

    known(("start_agent",), spec.start_agent, "agent", spec.agents)
    owners: dict[str, str] = {}
    for agent_name, agent in spec.agents.items():
        at: Loc = ("agents", agent_name)
        for i, edge in enumerate(agent.handoffs):
            known((*at, "handoffs", i, "to"), edge.to, "agent", spec.agents)
        for key, names, kind in (("tools", spec.tools, "tool"), ("slots", spec.slots, "slot")):
            for i, name in enumerate(getattr(agent, key)):
                known((*at, key, i), name, kind, names)
        for i, intent in enumerate(agent.intents):
            known((*at, "intents", i), intent, "intent", spec.intents)
            if intent in owners:
                problems.append(((*at, "intents", i), f"{intent!r} is already handled by {owners[intent]}"))
            owners.setdefault(intent, agent_name)
    for tool_name, tool in spec.tools.items():
        for pname, parameter in tool.parameters.items():
            if parameter.slot is not None:
                known(("tools", tool_name, "parameters", pname, "slot"), parameter.slot, "slot", spec.slots)
        for i, requirement in enumerate(tool.requires):
            for j, pname in enumerate(requirement.any_of):
                if pname not in tool.parameters:
                    problems.append((("tools", tool_name, "requires", i, "any_of", j),
                                     f"{pname!r} is not a parameter of the tool; they are {sorted(tool.parameters)}"))
    for i, slot in enumerate(spec.verification.account_slots):
        known(("verification", "account_slots", i), slot, "slot", spec.slots)
    for key, fields in TEMPLATE_FIELDS.items():
        if (template := getattr(spec.whatsapp, key)) is not None:
            problems += _template_placeholders(template, set(spec.slots), fields, ("whatsapp", key))
    return problems


def _template_placeholders(template: Template, slots: set[str], fields: frozenset[str], at: Loc) -> list[
        tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    for i, parameter in enumerate(template.parameters):
        here: Loc = (*at, "parameters", i)
        try:
            named = _fields_named(parameter.text)
        except ValueError as exc:  # a lone brace
            problems.append(((*here, "text"), str(exc)))
            continue
        if unknown := named - slots - {"company"} - fields:
            also = "".join(f", {{{name}}}" for name in sorted(fields))
            problems.append(((*here, "text"), f"{sorted(unknown)} are neither slots nor {{company}}{also}"))
        if named & slots and not parameter.fallback:
            problems.append((here, "names a slot, so it needs a fallback for customers without it"))
    return problems


# Validation with messages that say where ---------------------------------------------------------------------------


def validate(raw: Any, file: Path | str) -> ScenarioFile:
    """The parsed scenario.yaml `raw` as a ScenarioFile; ScenarioError listing each problem with where it is."""
    try:
        spec = ScenarioFile.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_report(file, [(tuple(e["loc"]), _expected(e)) for e in exc.errors()])) from None
    if problems := dangling(spec):
        raise ScenarioError(_report(file, problems))
    return spec


def _report(file: Path | str, problems: list[tuple[Loc, str]]) -> str:
    lines = [f"{file}: {path(loc) or '(top level)'}: {message}" for loc, message in problems]
    return "\n".join(lines if len(lines) == 1 else [f"{file}: {len(lines)} problems", *lines])


def path(loc: Loc) -> str:
    """A location as a reader finds it in the file: agents.BillingAgent.tools[2]."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (the key)"
        else:
            out += f".{part}" if out else str(part)
    return out


def _expected(error: Any) -> str:
    """Pydantic's message in the file's terms: what was expected, and what was there."""
    message: str = error["msg"]
    if error["type"] == "value_error":
        return message.removeprefix("Value error, ")
    if error["type"] == "missing":
        return "missing (required)"
    if error["type"] == "string_too_short":
        return "expected some words, not nothing"
    message = re.sub(r"^Input should be (a valid )?", "expected ", message).replace("dictionary", "mapping")
    return f"{message}, got {_brief(error['input'])}"


def _brief(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else f"a list of {len(value)}"
    text = str(value).lower() if isinstance(value, bool) else repr(value)  # YAML's true, not Python's True
    return text if len(text) <= 40 else text[:37] + "..."


# docs/scenarios.md -------------------------------------------------------------------------------------------------

#: Each generated table, in docs/scenarios.md between `<!-- keys: Model -->` and `<!-- end keys -->`.
DOCUMENTED: tuple[type[Section], ...] = (
    ScenarioFile, Agent, Handoff, Slot, Tool, Parameter, Requirement, Intent, Channels, VerificationRules,
    KnowledgeQuestion, WhatsApp, Template, TemplateParameter, Voice, Desk,
)
_TABLE = re.compile(r"(<!-- keys: (\w+) -->\n).*?(<!-- end keys -->)", re.DOTALL)
_REQUIRED = re.compile(r"(<!-- required phrases -->\n).*?(<!-- end required phrases -->)", re.DOTALL)


def table(model: type[Section]) -> str:
    """The markdown table of `model`'s keys: type, default and meaning."""
    rows = ["| key | value | default | meaning |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        value = _kind(info.annotation) + _bounds(info)
        rows.append(f"| `{info.alias or name}` | {value} | {_default(info)} | {info.description} |")
    return "\n".join(rows) + "\n"


def render_docs(text: str) -> str:
    """`text` (docs/scenarios.md) with each generated table as the models say."""
    models = {model.__name__: model for model in DOCUMENTED}
    text = _TABLE.sub(lambda m: m.group(1) + table(models[m.group(2)]) + m.group(3), text)
    required = ", ".join(f"`{name}`" for name in REQUIRED_PHRASES) + "\n"
    return _REQUIRED.sub(lambda m: m.group(1) + required + m.group(2), text)


def _kind(annotation: Any) -> str:
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _kind(args[0])
    if origin in (Union, types.UnionType):
        return " or ".join(_kind(a) for a in args if a is not type(None))
    if origin is Literal:
        return ", ".join(f"`{a}`" for a in args)
    if origin is list:
        return f"list of {_kind(args[0])}"
    if origin is dict:
        return f"name → {_kind(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return ", ".join(f"`{member.value}`" for member in annotation)
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return f"*{annotation.__name__}*"
    return {str: "text", int: "whole number", float: "number", bool: "`true`, `false`"}[annotation]


def _bounds(info: FieldInfo) -> str:
    if any(isinstance(m, StringConstraints) for m in info.metadata):
        return ", not empty"
    limits = {name: getattr(m, name) for m in info.metadata for name in ("ge", "le", "gt", "min_length")
              if hasattr(m, name)}
    if "ge" in limits and "le" in limits:
        return f", {limits['ge']} to {limits['le']}"
    for name, words in (("ge", "at least"), ("gt", "above"), ("min_length", "at least")):
        if name in limits:
            return f", {words} {limits[name]}"
    return ""


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    default = info.get_default(call_default_factory=True)
    if "shown" in extra:
        return str(extra["shown"])
    if default in (None, "", [], {}) or isinstance(default, Section):
        return "none" if not isinstance(default, Section) else "defaults"
    if isinstance(default, Enum):
        return f"`{default.value}`"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, list):
        return "`[" + ", ".join(map(str, default)) + "]`"
    if isinstance(default, str):
        return f"`{default}`" if get_origin(info.annotation) is Literal else f'"{default}"'
    return f"{default:g}" if isinstance(default, float) else str(default)


def main() -> int:
    """Rewrite the generated tables in docs/scenarios.md."""
    from shared.settings import PROJECT_ROOT

    doc = PROJECT_ROOT / "docs" / "scenarios.md"
    text = doc.read_text(encoding="utf-8")
    rendered = render_docs(text)
    if rendered != text:
        doc.write_text(rendered, encoding="utf-8")
        print(f"rewrote the tables in {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
