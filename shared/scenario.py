"""Scenarios as data: agents, slots, tools, handoff edges, intents and omnichannel thresholds.

A scenario is a folder with `scenario.yaml`, a `tools.py` holding one function per declared tool, and optional demo
data (`data.yaml`) that the tools read. The format is the pydantic models in shared/scenario_schema.py, and
docs/scenarios.md is generated from them. The loader rejects unknown keys, wrong types and names that point nowhere
with a message naming the file, the path inside it and what was expected, so a typo fails at start-up instead of
becoming a setting nobody reads. The objects built here are plain frozen dataclasses: the conversation core reads
them on every turn, and importing this module costs the function app's cold start no pydantic.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal
from zoneinfo import ZoneInfo

import yaml

from shared.errors import ScenarioError
from shared.models import Verification
from shared.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from shared import scenario_schema as schema

SCENARIOS_DIR = PROJECT_ROOT / "scenarios"

HandoffMode = Literal["announced", "discrete"]


@dataclass(frozen=True)
class SlotSpec:
    """A piece of information an agent collects once and keeps on the customer record."""

    name: str
    description: str
    ask: str  # the question an agent asks to get it
    pattern: str | None = None  # regex that finds it in free text (group 1 if present, else the match)
    kind: str = "text"  # how a found value is normalised: text, digits, phone, title
    choices: dict[str, tuple[str, ...]] = field(default_factory=dict)  # value -> words that mean it

    def extract(self, text: str) -> str | None:
        """The slot's value if `text` states it: the earliest choice word, else the pattern's match."""
        if self.choices:
            found = [
                (m.start(), value)
                for value, words in self.choices.items()
                for word in words
                if (m := re.search(rf"\b{re.escape(word)}\b", text, re.IGNORECASE))
            ]
            return min(found)[1] if found else None
        if not self.pattern:
            return None
        match = re.search(self.pattern, text, re.IGNORECASE)
        if not match:
            return None
        return normalize_slot(self.kind, match.group(1) if match.groups() else match.group(0))


@dataclass(frozen=True)
class Requirement:
    """At least one of `any_of` must be known before the tool runs; `ask` is how the agent asks for it."""

    any_of: tuple[str, ...]
    ask: str


@dataclass(frozen=True)
class ToolResult:
    """What a tool returns: facts for an LLM, a sentence for the offline policy, and slots it learned."""

    data: dict[str, Any]
    say: str
    slots: dict[str, str] = field(default_factory=dict)
    ok: bool = True
    # Set when the result calls for a person (a dispute over the scenario's limit, say): the reason, in words a
    # person at the desk reads. The conversation escalates the customer after this turn (shared/desk.py).
    escalate: str | None = None
    # Set when the reply promises a text later, as "kind:ref" ("outage_restored:OUT-4471"): the conversation records
    # the promise on the customer record, and it is sent once when that happens (shared/sms/promises.py).
    promise: str | None = None


ToolFunction = Callable[[dict[str, Any], "ScenarioData"], ToolResult]


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, dict[str, Any]]  # name -> {"slot": slot} or {"type", "description"[, "enum"]}
    requires: tuple[Requirement, ...]
    keywords: tuple[str, ...]  # offline policy: words that pick this tool within its agent
    function: ToolFunction
    # Who must the customer have shown they are before this runs: account data needs "verified" (docs/security.md).
    verification: Verification = Verification.UNVERIFIED

    def slot_parameters(self) -> dict[str, str]:
        """Parameter name -> slot name, for the parameters that are slots."""
        return {p: spec["slot"] for p, spec in self.parameters.items() if "slot" in spec}


@dataclass(frozen=True)
class HandoffEdge:
    target: str
    mode: HandoffMode
    when: str  # when to take this edge, in words (an LLM reads it as the handoff tool's description)


@dataclass(frozen=True)
class AgentSpec:
    name: str
    title: str  # how the agent introduces itself ("Billing")
    greeting: str  # spoken when the agent starts a conversation or takes an announced handoff
    instructions: str
    intents: tuple[str, ...]  # intents this agent handles (offline routing)
    slots: tuple[str, ...]  # slots this agent needs at some point
    tools: tuple[str, ...]
    handoffs: tuple[HandoffEdge, ...]

    def edge_to(self, target: str) -> HandoffEdge | None:
        return next((e for e in self.handoffs if e.target == target), None)


@dataclass(frozen=True)
class IntentSpec:
    name: str
    examples: tuple[str, ...]
    keywords: dict[str, float]  # word or phrase -> weight
    summary: str = ""  # how a handoff summary names this topic; may use {company} and slots ({service_address})


@dataclass(frozen=True)
class Omnichannel:
    queue_wait_threshold_seconds: float = 120.0
    queue_depth_threshold: int = 50
    mass_outage_threshold: int = 1000
    alternate_channels: tuple[str, ...] = ("whatsapp", "webchat")


@dataclass(frozen=True)
class Holder:
    """An account holder as the back office knows them: where a code goes, and what only they should know."""

    phone: str  # the number on record (E.164): codes go here, never to a number the customer just typed
    answers: dict[str, str] = field(default_factory=dict)  # knowledge answers by name: {"service_zip": "62704"}


#: The scenario's way to find the holder of the account a tool's arguments name (tools.py's HOLDER).
HolderLookup = Callable[[dict[str, Any], "ScenarioData"], "Holder | None"]


@dataclass(frozen=True)
class KnowledgeQuestion:
    answer: str  # the Holder.answers key
    ask: str  # how the agent names it: "the ZIP code of the service address"
    # The answer is a number (a ZIP code): a caller may key it on the phone, apart from the rest of the answer.
    digits: bool = False


@dataclass(frozen=True)
class VerificationSpec:
    """How customers prove who they are: one-time codes to the number on record, and knowledge questions."""

    methods: tuple[str, ...] = ("code",)  # "code" and/or "knowledge", in the order the agent offers them
    code_length: int = 6
    code_ttl_seconds: float = 300.0
    attempts: int = 3  # wrong answers, across channels and sessions, before the account is locked for a while
    lock_seconds: float = 900.0
    codes_per_hour: int = 3  # texts one number may receive an hour, however often codes are asked for
    knowledge: tuple[KnowledgeQuestion, ...] = ()
    # The slots that name an account. A gated tool called with none of them (an outage looked up by the address the
    # customer gave) is about nobody's account, and runs unchecked; empty: every call of a gated tool is checked.
    account_slots: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeskSpec:
    """The people at the desk: when the AI hands a customer to them, and what a wait is estimated from."""

    # Words that go straight to a person, whatever the agent is doing (a gas smell is not a billing question).
    safety_words: tuple[str, ...] = ()
    # Tool calls in a row that got nowhere (a requirement still missing, or a failed lookup) before a person helps.
    failed_attempts: int = 3
    # The handle time assumed until the desk has closed some conversations of its own (docs/desk.md).
    default_handle_seconds: float = 300.0

    def safety_word_in(self, text: str) -> str | None:
        lowered = " ".join(text.lower().split())
        return next((w for w in self.safety_words if w in lowered), None)


DEFAULT_REPROMPT = "Are you still there?"
DEFAULT_GOODBYE = ("I haven't heard anything for a while, so I'll end the call now. Thank you for calling {company}, "
                   "and please call back any time. Goodbye.")


#: The shortest and longest silence a scenario may set: under a second cuts off a caller drawing breath, and a
#: line held open for minutes on nobody costs a call slot and a phone line.
SILENCE_SECONDS = (1.0, 120.0)


@dataclass(frozen=True)
class VoiceSpec:
    """Calls: what the agent does when the caller says nothing (media_gateway/silence.py, docs/voice.md)."""

    # How long the line waits on the caller, once the agent's audio has played, before asking if they are there;
    # the same again after that question before the goodbye (and the call ends, recorded as abandoned).
    silence_reprompt_seconds: float = 7.0
    reprompt: str = DEFAULT_REPROMPT  # may name {company}
    goodbye: str = DEFAULT_GOODBYE  # may name {company}
    vocabulary: tuple[str, ...] = ()  # what speech-to-text should expect callers to say: streets, towns, names


@dataclass(frozen=True)
class TemplateParameter:
    """One body parameter of a WhatsApp template, in the template's order."""

    name: str
    text: str  # may name {company} and slots ({customer_name}), filled from the customer's record
    fallback: str = ""  # used when a slot the text names is not on the record (required if it names one)


@dataclass(frozen=True)
class WhatsAppTemplate:
    """The approved template sent when WhatsApp's 24-hour customer-service window is closed."""

    name: str
    language: str
    parameters: tuple[TemplateParameter, ...] = ()

    def values(self, company: str, collected: dict[str, str]) -> list[tuple[str, str]]:
        """(parameter name, text) in body order, for this customer."""
        values = []
        for p in self.parameters:
            try:
                values.append((p.name, p.text.format_map({**collected, "company": company})))
            except KeyError:
                values.append((p.name, p.fallback))
        return values


DEFAULT_NON_TEXT_REPLY = "Thanks! I can only read text messages here. Could you tell me in words what you need?"


@dataclass(frozen=True)
class WhatsAppSpec:
    template: WhatsAppTemplate | None = None  # None: outside the window nothing can be sent (recorded as failed)
    non_text_reply: str = DEFAULT_NON_TEXT_REPLY  # the answer to an image, voice note, location, ...
    # Channel handoff messages (business-initiated, so templates); their parameters may also name {summary} and,
    # for the web chat link, {link}. None: that message is not sent (the handoff records why).
    invite: WhatsAppTemplate | None = None  # "continue here on WhatsApp"
    link_invite: WhatsAppTemplate | None = None  # "continue in your browser: {link}"
    reminder: WhatsAppTemplate | None = None  # the one nudge when the customer has not come yet
    code: WhatsAppTemplate | None = None  # a one-time verification code ({code}); None: codes go by SMS only


@dataclass(frozen=True)
class ScenarioData:
    """The demo back-office data a scenario ships with (accounts, outages, ...), read by its tools."""

    records: dict[str, Any]
    # What the back office has said happened since, as the key of the promise it fulfils ("outage_restored:OUT-4471",
    # shared/sms/promises.py): the shipped data cannot change under a running app, so a tool reads both. The
    # conversation core fills it in for each turn.
    happened: frozenset[str] = frozenset()

    def has_happened(self, event: str) -> bool:
        return event in self.happened

    def __getitem__(self, key: str) -> Any:
        return self.records[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.records.get(key, default)


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: scenarios are loaded once
class Scenario:
    name: str
    company: str
    start_agent: str
    agents: dict[str, AgentSpec]
    slots: dict[str, SlotSpec]
    tools: dict[str, ToolSpec]
    intents: dict[str, IntentSpec]
    phrases: dict[str, str]  # small talk and fallbacks: farewell, clarify, fallback, ...
    omnichannel: Omnichannel
    data: ScenarioData
    path: Path
    escalation: str = ""  # E.164 number of the human team a call is transferred to; empty: no transfer
    whatsapp: WhatsAppSpec = WhatsAppSpec()
    desk: DeskSpec = DeskSpec()
    verification: VerificationSpec = VerificationSpec()
    voice: VoiceSpec = VoiceSpec()
    holder_lookup: HolderLookup | None = None  # None: no tool can be verified for (and none may ask for it)
    timezone: str = "America/New_York"  # the business's clock: "call me back at 3 pm" is 3 pm here

    @property
    def clock(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def holder(self, arguments: dict[str, Any]) -> Holder | None:
        """The holder of the account `arguments` name, if there is one."""
        return self.holder_lookup(arguments, self.data) if self.holder_lookup else None

    def names_account(self, tool: str, arguments: dict[str, Any]) -> bool:
        """Whether calling `tool` with `arguments` is about an account (verification.account_slots)."""
        return bool(self.account_named(tool, arguments)) or not self.verification.account_slots

    def account_named(self, tool: str, arguments: dict[str, Any]) -> str:
        """What `arguments` name an account by ("account_number=100200300"), in a stable order; empty if nothing."""
        slots = self.verification.account_slots
        named = sorted(f"{slot}={arguments[param]}" for param, slot in self.tools[tool].slot_parameters().items()
                       if arguments.get(param) and (not slots or slot in slots))
        return "&".join(named)

    def account_arguments(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        """The arguments of a call of `tool` that name an account (its account slots' parameters), as HOLDER reads
        them: {"policy_number": "LM-482913"}."""
        slots = self.verification.account_slots
        return {param: arguments[param] for param, slot in self.tools[tool].slot_parameters().items()
                if arguments.get(param) and (not slots or slot in slots)}

    def agent(self, name: str) -> AgentSpec:
        return self.agents[name]

    def agent_for_intent(self, intent: str) -> AgentSpec | None:
        return next((a for a in self.agents.values() if intent in a.intents), None)

    def phrase(self, key: str, **values: Any) -> str:
        return self.phrases[key].format(company=self.company, **values)


def normalize_slot(kind: str, raw: str) -> str:
    raw = raw.strip()
    if kind == "digits":
        return re.sub(r"\D", "", raw)
    if kind == "phone":
        digits = re.sub(r"\D", "", raw)
        if len(digits) == 10:  # a North American number said without the country code
            digits = "1" + digits
        return "+" + digits
    if kind == "title":
        return " ".join(w if w.isupper() else w.capitalize() for w in raw.split())
    return " ".join(raw.split())


# Loading --------------------------------------------------------------------------------------------------------
# scenario.yaml is checked by the pydantic models in shared/scenario_schema.py (imported here, when a scenario is
# loaded: pydantic costs ~80 ms to import, which the function app's cold start does not pay). What the models cannot
# see, tools.py's functions and HOLDER, is checked below.


@lru_cache(maxsize=8)
def load_scenario(name_or_path: str) -> Scenario:
    """Load and validate a scenario by folder name under scenarios/ or by path. Cached: scenarios are immutable."""
    from shared import scenario_schema

    folder = Path(name_or_path)
    if not folder.is_absolute():
        folder = SCENARIOS_DIR / name_or_path
    spec_file = folder / "scenario.yaml"
    if not spec_file.is_file():
        raise ScenarioError(f"no scenario at {folder}: {spec_file.name} is missing")
    spec = scenario_schema.validate(_read_yaml(spec_file), spec_file)

    functions = _tool_functions(folder)
    if missing := [name for name in spec.tools if name not in functions]:
        raise ScenarioError(f"{spec_file}: tools.{missing[0]}: tools.py has no function for this tool in TOOLS")
    if extra := set(functions) - set(spec.tools):
        raise ScenarioError(f"{folder / 'tools.py'}: TOOLS has functions no tool declares: {sorted(extra)}")
    holder_lookup = _holder_lookup(folder)
    if holder_lookup is None and (gated := [name for name, tool in spec.tools.items()
                                            if tool.verification.at_least(Verification.IDENTIFIED)]):
        raise ScenarioError(f"{folder / 'tools.py'}: tools {gated} need verification, so tools.py must define HOLDER")

    data_file = folder / "data.yaml"
    return Scenario(
        name=spec.name,
        company=spec.company,
        start_agent=spec.start_agent,
        agents={name: _agent(name, agent) for name, agent in spec.agents.items()},
        slots={name: _slot(name, slot) for name, slot in spec.slots.items()},
        tools={name: _tool(name, tool, functions[name]) for name, tool in spec.tools.items()},
        intents={name: IntentSpec(name, tuple(i.examples), dict(i.keywords), i.summary.strip())
                 for name, i in spec.intents.items()},
        phrases=dict(spec.phrases),
        omnichannel=Omnichannel(**{**spec.omnichannel.model_dump(),
                                   "alternate_channels": tuple(spec.omnichannel.alternate_channels)}),
        data=ScenarioData(_read_yaml(data_file) if data_file.is_file() else {}),
        path=folder,
        escalation=spec.escalation,
        whatsapp=WhatsAppSpec(non_text_reply=spec.whatsapp.non_text_reply, **{
            key: _template(template) for key in ("template", "invite", "link_invite", "reminder", "code")
            if (template := getattr(spec.whatsapp, key)) is not None}),
        desk=DeskSpec(tuple(" ".join(w.lower().split()) for w in spec.desk.safety_words), spec.desk.failed_attempts,
                      spec.desk.default_handle_seconds),
        verification=_verification(spec.verification),
        voice=VoiceSpec(spec.voice.silence_reprompt_seconds, spec.voice.reprompt, spec.voice.goodbye,
                        tuple(spec.voice.vocabulary)),
        holder_lookup=holder_lookup,
        timezone=spec.timezone,
    )


def _slot(name: str, slot: schema.Slot) -> SlotSpec:
    choices = {value: tuple(words) for value, words in slot.choices.items()}
    return SlotSpec(name, slot.description, slot.ask, slot.pattern or None, slot.kind, choices)


def _tool(name: str, tool: schema.Tool, function: ToolFunction) -> ToolSpec:
    return ToolSpec(
        name=name,
        description=tool.description,
        parameters={p: spec.model_dump(exclude_none=True) for p, spec in tool.parameters.items()},
        requires=tuple(Requirement(tuple(r.any_of), r.ask) for r in tool.requires),
        keywords=tuple(tool.keywords),
        function=function,
        verification=tool.verification,
    )


def _agent(name: str, agent: schema.Agent) -> AgentSpec:
    return AgentSpec(
        name=name,
        title=agent.title,
        greeting=agent.greeting,
        instructions=agent.instructions,
        intents=tuple(agent.intents),
        slots=tuple(agent.slots),
        tools=tuple(agent.tools),
        handoffs=tuple(HandoffEdge(edge.to, edge.mode, edge.when) for edge in agent.handoffs),
    )


def _template(template: schema.Template) -> WhatsAppTemplate:
    parameters = tuple(TemplateParameter(p.name, p.text, p.fallback) for p in template.parameters)
    return WhatsAppTemplate(template.name, template.language, parameters)


def _verification(rules: schema.VerificationRules) -> VerificationSpec:
    return VerificationSpec(
        methods=tuple(rules.methods),
        code_length=rules.code_length,
        code_ttl_seconds=rules.code_ttl_seconds,
        attempts=rules.attempts,
        lock_seconds=rules.lock_seconds,
        codes_per_hour=rules.codes_per_hour,
        knowledge=tuple(KnowledgeQuestion(q.answer, q.ask, q.digits) for q in rules.knowledge),
        account_slots=tuple(rules.account_slots),
    )


def _holder_lookup(folder: Path) -> HolderLookup | None:
    module = _tools_module(folder)
    lookup = getattr(module, "HOLDER", None) if module is not None else None
    if lookup is not None and not callable(lookup):
        raise ScenarioError(f"{folder / 'tools.py'}: HOLDER must be a function (arguments, data) -> Holder | None")
    return lookup


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ScenarioError(f"{path}: the top level must be a mapping")
    return loaded


@lru_cache(maxsize=8)
def _tools_module(folder: Path) -> Any:
    """The scenario's tools.py, imported once (its TOOLS and HOLDER are read from the same module)."""
    path = folder / "tools.py"
    if not path.is_file():
        return None
    module_name = f"switchboard_scenario_{folder.name}_tools"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tool_functions(folder: Path) -> dict[str, ToolFunction]:
    """The scenario's tools.py exports TOOLS: {name: function}."""
    module = _tools_module(folder)
    if module is None:
        return {}
    path = folder / "tools.py"
    tools = getattr(module, "TOOLS", None)
    if not isinstance(tools, dict):
        raise ScenarioError(f"{path}: must define TOOLS = {{name: function}}")
    return dict(tools)
