"""Scenarios as data: agents, slots, tools, handoff edges, intents and omnichannel thresholds.

A scenario is a folder with `scenario.yaml`, a `tools.py` holding one function per declared tool, and optional demo
data (`data.yaml`) that the tools read. The format is documented in docs/scenarios.md. The loader rejects unknown
keys and dangling references with a message naming the file and the key, so a typo fails at start-up instead of
becoming a setting nobody reads.
"""

from __future__ import annotations

import importlib.util
import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from shared.errors import ScenarioError
from shared.models import Verification
from shared.settings import PROJECT_ROOT

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
    queue_wait_threshold_seconds: float = 120
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


@dataclass(frozen=True)
class VerificationSpec:
    """How customers prove who they are: one-time codes to the number on record, and knowledge questions."""

    methods: tuple[str, ...] = ("code",)  # "code" and/or "knowledge", in the order the agent offers them
    code_length: int = 6
    code_ttl_seconds: float = 300
    attempts: int = 3  # wrong answers, across channels and sessions, before the account is locked for a while
    lock_seconds: float = 900
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
    default_handle_seconds: float = 300

    def safety_word_in(self, text: str) -> str | None:
        lowered = " ".join(text.lower().split())
        return next((w for w in self.safety_words if w in lowered), None)


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
    holder_lookup: HolderLookup | None = None  # None: no tool can be verified for (and none may ask for it)

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

_TOP_KEYS = {
    "name", "company", "start_agent", "agents", "slots", "tools", "intents", "phrases", "omnichannel", "escalation",
    "whatsapp", "desk", "verification",
}
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_AGENT_KEYS = {"title", "greeting", "instructions", "intents", "slots", "tools", "handoffs"}
_SLOT_KEYS = {"description", "ask", "pattern", "kind", "choices"}
_TOOL_KEYS = {"description", "parameters", "requires", "keywords", "verification"}
_EDGE_KEYS = {"to", "mode", "when"}
_INTENT_KEYS = {"examples", "keywords", "summary"}
_REQUIRED_PHRASES = {
    "clarify", "fallback", "farewell", "thanks", "anything_else",
    "switch_offer", "switch_accepted", "switch_declined", "switch_unavailable",
}


@lru_cache(maxsize=8)
def load_scenario(name_or_path: str) -> Scenario:
    """Load and validate a scenario by folder name under scenarios/ or by path. Cached: scenarios are immutable."""
    folder = Path(name_or_path)
    if not folder.is_absolute():
        folder = SCENARIOS_DIR / name_or_path
    spec_file = folder / "scenario.yaml"
    if not spec_file.is_file():
        raise ScenarioError(f"no scenario at {folder}: {spec_file.name} is missing")
    raw = _read_yaml(spec_file)
    where = str(spec_file)
    _check_keys(raw, _TOP_KEYS, where, required={"name", "company", "start_agent", "agents", "phrases"})

    slots = {name: _slot(name, body, f"{where}: slots.{name}") for name, body in (raw.get("slots") or {}).items()}
    functions = _tool_functions(folder)
    tools = {
        name: _tool(name, body, slots, functions, f"{where}: tools.{name}")
        for name, body in (raw.get("tools") or {}).items()
    }
    if extra := set(functions) - set(tools):
        raise ScenarioError(f"{folder / 'tools.py'}: TOOLS has functions no tool declares: {sorted(extra)}")
    intents = {name: _intent(name, body, f"{where}: intents.{name}") for name, body in (raw.get("intents") or {}).items()}
    agents = {name: _agent(name, body, f"{where}: agents.{name}") for name, body in raw["agents"].items()}
    _check_references(agents, slots, tools, intents, where)
    if raw["start_agent"] not in agents:
        raise ScenarioError(f"{where}: start_agent {raw['start_agent']!r} is not one of the agents")

    phrases = {str(k): str(v) for k, v in raw["phrases"].items()}
    if missing := _REQUIRED_PHRASES - set(phrases):
        raise ScenarioError(f"{where}: phrases is missing {sorted(missing)}")

    omni_raw = raw.get("omnichannel") or {}
    _check_keys(omni_raw, set(Omnichannel.__dataclass_fields__), f"{where}: omnichannel")
    omnichannel = Omnichannel(**{k: tuple(v) if isinstance(v, list) else v for k, v in omni_raw.items()})

    escalation = raw.get("escalation", "")
    if not isinstance(escalation, str) or (escalation and not _E164.match(escalation)):
        raise ScenarioError(f"{where}: escalation must be a quoted E.164 phone number like '+15555550199'")

    whatsapp = _whatsapp(raw.get("whatsapp") or {}, slots, f"{where}: whatsapp")
    desk = _desk(raw.get("desk") or {}, f"{where}: desk")
    verification = _verification(raw.get("verification") or {}, f"{where}: verification")
    holder_lookup = _holder_lookup(folder)
    if holder_lookup is None and (gated := [t.name for t in tools.values() if t.verification.at_least(
            Verification.IDENTIFIED)]):
        raise ScenarioError(f"{folder / 'tools.py'}: tools {gated} need verification, so tools.py must define HOLDER")
    if unknown := sorted(set(verification.account_slots) - set(slots)):
        raise ScenarioError(f"{where}: verification.account_slots: no slots named {unknown}")

    data_file = folder / "data.yaml"
    data = ScenarioData(_read_yaml(data_file) if data_file.is_file() else {})
    return Scenario(
        name=str(raw["name"]),
        company=str(raw["company"]),
        start_agent=raw["start_agent"],
        agents=agents,
        slots=slots,
        tools=tools,
        intents=intents,
        phrases=phrases,
        omnichannel=omnichannel,
        data=data,
        path=folder,
        escalation=escalation,
        whatsapp=whatsapp,
        desk=desk,
        verification=verification,
        holder_lookup=holder_lookup,
    )


def _verification(body: dict[str, Any], where: str) -> VerificationSpec:
    allowed = {"methods", "code_length", "code_ttl_seconds", "attempts", "lock_seconds", "codes_per_hour", "knowledge",
               "account_slots"}
    _check_keys(body, allowed, where)
    methods = tuple(body.get("methods") or VerificationSpec.methods)
    if not methods or set(methods) - {"code", "knowledge"}:
        raise ScenarioError(f"{where}.methods: a list of code and/or knowledge")
    numbers = {}
    for name in allowed - {"methods", "knowledge", "account_slots"}:
        value = body.get(name, getattr(VerificationSpec, name))
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ScenarioError(f"{where}.{name}: expected a positive number")
        numbers[name] = value
    if not 4 <= numbers["code_length"] <= 10:
        raise ScenarioError(f"{where}.code_length: between 4 and 10 digits")
    questions = []
    for i, q in enumerate(body.get("knowledge") or []):
        _check_keys(q, {"answer", "ask"}, f"{where}.knowledge[{i}]", required={"answer", "ask"})
        questions.append(KnowledgeQuestion(str(q["answer"]), str(q["ask"])))
    if "knowledge" in methods and not questions:
        raise ScenarioError(f"{where}.knowledge: the knowledge method needs questions")
    account_slots = body.get("account_slots") or []
    if not isinstance(account_slots, list) or not all(isinstance(a, str) for a in account_slots):
        raise ScenarioError(f"{where}.account_slots: a list of slot names")
    return VerificationSpec(methods, int(numbers["code_length"]), float(numbers["code_ttl_seconds"]),
                            int(numbers["attempts"]), float(numbers["lock_seconds"]), int(numbers["codes_per_hour"]),
                            tuple(questions), tuple(account_slots))


def _holder_lookup(folder: Path) -> HolderLookup | None:
    module = _tools_module(folder)
    lookup = getattr(module, "HOLDER", None) if module is not None else None
    if lookup is not None and not callable(lookup):
        raise ScenarioError(f"{folder / 'tools.py'}: HOLDER must be a function (arguments, data) -> Holder | None")
    return lookup


def _desk(body: dict[str, Any], where: str) -> DeskSpec:
    _check_keys(body, set(DeskSpec.__dataclass_fields__), where)
    words = body.get("safety_words") or []
    if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
        raise ScenarioError(f"{where}.safety_words: expected a list of words or phrases")
    attempts = body.get("failed_attempts", DeskSpec.failed_attempts)
    if not isinstance(attempts, int) or attempts < 1:
        raise ScenarioError(f"{where}.failed_attempts: expected a whole number of at least 1")
    handle = body.get("default_handle_seconds", DeskSpec.default_handle_seconds)
    if not isinstance(handle, (int, float)) or handle <= 0:
        raise ScenarioError(f"{where}.default_handle_seconds: expected a positive number of seconds")
    return DeskSpec(tuple(" ".join(w.lower().split()) for w in words), attempts, float(handle))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ScenarioError(f"{path}: the top level must be a mapping")
    return loaded


def _check_keys(body: Any, allowed: set[str], where: str, required: set[str] = frozenset()) -> None:
    if not isinstance(body, dict):
        raise ScenarioError(f"{where}: expected a mapping, got {type(body).__name__}")
    if unknown := set(body) - allowed:
        raise ScenarioError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    if missing := required - set(body):
        raise ScenarioError(f"{where}: missing key(s) {sorted(missing)}")


def _slot(name: str, body: dict[str, Any], where: str) -> SlotSpec:
    _check_keys(body, _SLOT_KEYS, where, required={"description", "ask"})
    if body.get("pattern"):
        try:
            re.compile(body["pattern"])
        except re.error as exc:
            raise ScenarioError(f"{where}.pattern: not a valid regex: {exc}") from None
    kind = body.get("kind", "text")
    if kind not in ("text", "digits", "phone", "title"):
        raise ScenarioError(f"{where}.kind: must be text, digits, phone or title, not {kind!r}")
    choices = body.get("choices") or {}
    if not isinstance(choices, dict) or not all(isinstance(w, list) and w for w in choices.values()):
        raise ScenarioError(f"{where}.choices: must map each value to a list of words that mean it")
    return SlotSpec(
        name,
        body["description"],
        body["ask"],
        body.get("pattern"),
        kind,
        {str(value): tuple(str(w) for w in words) for value, words in choices.items()},
    )


def _tool(
    name: str, body: dict[str, Any], slots: dict[str, SlotSpec], functions: dict[str, ToolFunction], where: str
) -> ToolSpec:
    _check_keys(body, _TOOL_KEYS, where, required={"description"})
    if name not in functions:
        raise ScenarioError(f"{where}: tools.py has no function for this tool in TOOLS")
    parameters: dict[str, dict[str, Any]] = {}
    for pname, pspec in (body.get("parameters") or {}).items():
        _check_keys(pspec, {"slot", "type", "description", "enum"}, f"{where}.parameters.{pname}")
        if "slot" in pspec and pspec["slot"] not in slots:
            raise ScenarioError(f"{where}.parameters.{pname}: unknown slot {pspec['slot']!r}")
        if "slot" not in pspec and "description" not in pspec:
            raise ScenarioError(f"{where}.parameters.{pname}: give a slot or a description")
        parameters[pname] = dict(pspec)
    requires = []
    for i, req in enumerate(body.get("requires") or []):
        _check_keys(req, {"any_of", "ask"}, f"{where}.requires[{i}]", required={"any_of", "ask"})
        if unknown := set(req["any_of"]) - set(parameters):
            raise ScenarioError(f"{where}.requires[{i}]: {sorted(unknown)} are not parameters of the tool")
        requires.append(Requirement(tuple(req["any_of"]), req["ask"]))
    return ToolSpec(
        name=name,
        description=body["description"],
        parameters=parameters,
        requires=tuple(requires),
        keywords=tuple(body.get("keywords") or ()),
        function=functions[name],
        verification=_level(body.get("verification", "unverified"), f"{where}.verification"),
    )


def _level(raw: Any, where: str) -> Verification:
    try:
        return Verification(raw)
    except ValueError:
        raise ScenarioError(f"{where}: one of {[v.value for v in Verification]}") from None


_HANDOFF_TEMPLATES = {"invite": {"summary"}, "link_invite": {"summary", "link"}, "reminder": {"summary", "link"},
                      "code": {"code"}}


def _whatsapp(body: dict[str, Any], slots: dict[str, SlotSpec], where: str) -> WhatsAppSpec:
    _check_keys(body, {"template", "non_text_reply", *_HANDOFF_TEMPLATES}, where)
    templates = {
        key: _template(body[key], slots, f"{where}.{key}", extra_fields)
        for key, extra_fields in {"template": set(), **_HANDOFF_TEMPLATES}.items()
        if key in body
    }
    reply = body.get("non_text_reply", DEFAULT_NON_TEXT_REPLY)
    if not isinstance(reply, str) or not reply.strip():
        raise ScenarioError(f"{where}.non_text_reply: must be a non-empty sentence")
    return WhatsAppSpec(non_text_reply=reply.strip(), **templates)


def _template(raw: Any, slots: dict[str, SlotSpec], where: str, extra_fields: set[str]) -> WhatsAppTemplate:
    """An approved WhatsApp template: its parameters may name {company}, slots, and the message's `extra_fields`."""
    _check_keys(raw, {"name", "language", "parameters"}, where, required={"name", "language"})
    if not re.fullmatch(r"[a-z0-9_]+", str(raw["name"])):
        raise ScenarioError(f"{where}.name: WhatsApp template names are lowercase letters, digits and _")
    if not re.fullmatch(r"[a-z]{2,3}(_[A-Z]{2})?", str(raw["language"])):
        raise ScenarioError(f"{where}.language: a WhatsApp language code like en_US, not {raw['language']!r}")
    if not isinstance(raw.get("parameters") or [], list):
        raise ScenarioError(f"{where}.parameters: must be a list of {{name, text[, fallback]}}")
    parameters = []
    for i, p in enumerate(raw.get("parameters") or []):
        here = f"{where}.parameters[{i}]"
        _check_keys(p, {"name", "text", "fallback"}, here, required={"name", "text"})
        named = {field for _, field, _, _ in string.Formatter().parse(str(p["text"])) if field is not None}
        if unknown := named - set(slots) - {"company"} - extra_fields:
            also = "".join(f", {{{name}}}" for name in sorted(extra_fields))
            raise ScenarioError(f"{here}.text: {sorted(unknown)} are neither slots nor {{company}}{also}")
        if named & set(slots) and not p.get("fallback"):
            raise ScenarioError(f"{here}: names a slot, so it needs a fallback for customers without it")
        parameters.append(TemplateParameter(str(p["name"]), str(p["text"]), str(p.get("fallback", ""))))
    return WhatsAppTemplate(str(raw["name"]), str(raw["language"]), tuple(parameters))


def _intent(name: str, body: dict[str, Any], where: str) -> IntentSpec:
    _check_keys(body, _INTENT_KEYS, where)
    keywords = body.get("keywords") or {}
    if isinstance(keywords, list):
        keywords = {k: 1.0 for k in keywords}
    return IntentSpec(
        name,
        tuple(body.get("examples") or ()),
        {str(k): float(v) for k, v in keywords.items()},
        str(body.get("summary") or "").strip(),
    )


def _agent(name: str, body: dict[str, Any], where: str) -> AgentSpec:
    _check_keys(body, _AGENT_KEYS, where, required={"title", "greeting", "instructions"})
    edges = []
    for i, edge in enumerate(body.get("handoffs") or []):
        _check_keys(edge, _EDGE_KEYS, f"{where}.handoffs[{i}]", required={"to", "when"})
        mode = edge.get("mode", "announced")
        if mode not in ("announced", "discrete"):
            raise ScenarioError(f"{where}.handoffs[{i}].mode: must be announced or discrete, not {mode!r}")
        edges.append(HandoffEdge(edge["to"], mode, edge["when"]))
    return AgentSpec(
        name=name,
        title=body["title"],
        greeting=body["greeting"].strip(),
        instructions=body["instructions"].strip(),
        intents=tuple(body.get("intents") or ()),
        slots=tuple(body.get("slots") or ()),
        tools=tuple(body.get("tools") or ()),
        handoffs=tuple(edges),
    )


def _check_references(
    agents: dict[str, AgentSpec],
    slots: dict[str, SlotSpec],
    tools: dict[str, ToolSpec],
    intents: dict[str, IntentSpec],
    where: str,
) -> None:
    owners: dict[str, str] = {}
    for agent in agents.values():
        here = f"{where}: agents.{agent.name}"
        for edge in agent.handoffs:
            if edge.target not in agents:
                raise ScenarioError(f"{here}.handoffs: unknown agent {edge.target!r}")
        if unknown := set(agent.tools) - set(tools):
            raise ScenarioError(f"{here}.tools: unknown tool(s) {sorted(unknown)}")
        if unknown := set(agent.slots) - set(slots):
            raise ScenarioError(f"{here}.slots: unknown slot(s) {sorted(unknown)}")
        for intent in agent.intents:
            if intent not in intents:
                raise ScenarioError(f"{here}.intents: unknown intent {intent!r}")
            if intent in owners:
                raise ScenarioError(f"{here}.intents: {intent!r} is already handled by {owners[intent]}")
            owners[intent] = agent.name


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
