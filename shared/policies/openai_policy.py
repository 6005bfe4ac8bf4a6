"""The OpenAI policy: an LLM (Azure OpenAI or any OpenAI-compatible endpoint) writes the active agent's reply.

The model sees the scenario's instructions for the active agent, what the record already knows, and the session so
far; it gets the agent's tools and one `handoff_to_<Agent>` function per handoff edge. Replies stream as TextDeltas
so voice can speak early. Tools run only through `TurnContext.call_tool`, and parameters whose slot is already known
are left out of the tool schemas, so the model has no way to ask for them again. An `escalate_to_person` function
lets the model hand the customer to the people at the desk (they asked for one, or it cannot help); the conversation
core then queues them and tells them their place and wait.

Importing this module imports `openai` (about half a second); the app imports it only when an LLM is configured.
Any endpoint failure ends the turn with the scenario's fallback line instead of an exception in the channel.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, NamedTuple, Sequence

import openai

from shared.policies.base import (
    EscalateRequest, HandoffRequest, Policy, PolicyEvent, SwitchRequest, TextDelta, TurnContext, VerificationNeeded,
)
from shared.models import Customer
from shared.scenario import Scenario
from shared.settings import Settings, SettingsError

if TYPE_CHECKING:
    from shared.synthesis import Ended, Synthesis

log = logging.getLogger(__name__)

MAX_RETRIES = 2  # the SDK's own retries (with backoff) on timeouts, connection errors, 429 and 5xx
MAX_ROUNDS = 5  # model calls per customer turn: tool rounds plus the final answer
HISTORY_TURNS = 20  # session turns sent back to the model; older ones live in the summary
HANDOFF_PREFIX = "handoff_to_"
CHECK_QUEUE = "check_queue"
SWITCH_CHANNEL = "switch_channel"
ESCALATE = "escalate_to_person"
#: The reason a person at the desk reads when the model gave none.
ESCALATE_REASON = "the assistant could not help"
COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"


class LLMClient(NamedTuple):
    client: openai.AsyncOpenAI
    model: str  # the Azure deployment name, or the model name of an OpenAI-compatible endpoint
    credential: Any = None  # the azure-identity credential behind an Entra ID token provider; closed with the client


def build_openai_client(settings: Settings) -> LLMClient:
    """Azure OpenAI when AZURE_OPENAI_ENDPOINT is set (key, else managed identity), else OPENAI_BASE_URL."""
    common: dict[str, Any] = {"timeout": settings.llm_timeout_seconds, "max_retries": MAX_RETRIES}
    if settings.azure_openai_endpoint:
        azure: dict[str, Any] = {
            "azure_endpoint": settings.azure_openai_endpoint,
            "api_version": settings.azure_openai_api_version,
            **common,
        }
        if settings.azure_openai_api_key:
            client = openai.AsyncAzureOpenAI(api_key=settings.azure_openai_api_key, **azure)
            return LLMClient(client, settings.azure_openai_deployment)
        # Imported here: only the keyless (managed identity) path needs azure-identity.
        from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider

        credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id or None)
        provider = get_bearer_token_provider(credential, COGNITIVE_SCOPE)
        client = openai.AsyncAzureOpenAI(azure_ad_token_provider=provider, **azure)
        return LLMClient(client, settings.azure_openai_deployment, credential)
    if settings.openai_base_url:
        # Local OpenAI-compatible servers often need no key, but the SDK insists on one.
        key = settings.openai_api_key or "unused"
        client = openai.AsyncOpenAI(base_url=settings.openai_base_url, api_key=key, **common)
        return LLMClient(client, settings.openai_model)
    raise SettingsError("the OpenAI policy needs AZURE_OPENAI_ENDPOINT or OPENAI_BASE_URL")


class OpenAIPolicy(Policy):
    name = "openai"

    def __init__(self, settings: Settings, llm: LLMClient | None = None) -> None:
        self._llm = llm or build_openai_client(settings)
        self._timeout = settings.llm_timeout_seconds

    async def close(self) -> None:
        await self._llm.client.close()
        if self._llm.credential is not None:
            await self._llm.credential.close()

    async def summarise(self, scenario: Scenario, customer: Customer, session_id: str) -> str:
        """The model writes the handoff summary; checked, else the extractive one (shared/summary.py)."""
        from shared.summary import model_summary

        return await model_summary(scenario, customer, session_id, self.complete)

    async def synthesise(self, scenario: Scenario, ended: Ended) -> Synthesis:
        """The model writes the words of the post-conversation synthesis; checked, else the rule-based one."""
        from shared.synthesis import model_synthesis

        return await model_synthesis(scenario, ended, self.complete, self.name)

    async def complete(self, messages: list[dict[str, str]]) -> str:
        """One request to the model, off the customer's turn (a handoff step, a synthesis): its whole text answer.
        Streamed, as every request here is, and bound by LLM_TIMEOUT_SECONDS from start to end; raises on failure."""
        request: dict[str, Any] = {"model": self._llm.model, "messages": messages, "stream": True, "temperature": 0}
        parts: list[str] = []
        async with asyncio.timeout(self._timeout):
            stream = await self._llm.client.chat.completions.create(**request)
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices[:1]:
                        parts.append(choice.delta.content or "")
        return "".join(parts)

    async def respond(self, ctx: TurnContext) -> AsyncIterator[PolicyEvent]:
        messages: list[dict[str, Any]] = [system_message(ctx), *history_messages(ctx)]
        messages.append({"role": "user", "content": ctx.text})
        handoffs = {f"{HANDOFF_PREFIX}{edge.target}": edge for edge in ctx.agent.handoffs}
        said = ""  # the reply text the customer has already received this turn
        try:
            for round_no in range(MAX_ROUNDS):
                # Rebuilt every round: a tool may have just learned a slot, which then leaves the schemas and
                # joins the known facts.
                messages[0] = system_message(ctx)
                tools = tool_schemas(ctx)
                request: dict[str, Any] = {"model": self._llm.model, "messages": messages, "stream": True}
                if tools:
                    # The last round must answer in words, so a model stuck calling tools still ends the turn.
                    request["tools"] = tools
                    request["tool_choice"] = "none" if round_no == MAX_ROUNDS - 1 else "auto"
                text: list[str] = []
                calls: dict[int, _PendingCall] = {}
                # The SDK retries a request that timed out, which alone would keep the customer waiting three
                # timeouts for the fallback line: the answer must begin within LLM_TIMEOUT_SECONDS, retries included.
                async with asyncio.timeout(self._timeout):
                    stream = await self._llm.client.chat.completions.create(**request)
                async with stream:
                    async for chunk in stream:
                        # Azure sends content-filter chunks with no choices; we ask for one choice (n=1).
                        for choice in chunk.choices[:1]:
                            delta = choice.delta
                            if delta.content:
                                said += delta.content
                                text.append(delta.content)
                                yield TextDelta(delta.content)
                            for part in delta.tool_calls or ():
                                calls.setdefault(part.index, _PendingCall()).add(part)
                if not calls:
                    if not said:  # an empty answer would leave the customer in silence
                        yield TextDelta(ctx.scenario.phrase("fallback"))
                    return

                ordered = [calls[i] for i in sorted(calls)]
                if switch := next((c for c in ordered if c.name == SWITCH_CHANNEL), None):
                    channel = str((_parse_arguments(switch.arguments) or {}).get("channel") or "")
                    if channel in ctx.switch.channels:
                        if not said:  # the customer must hear where to go next
                            yield TextDelta(ctx.scenario.phrase("switch_accepted", channel=_channel_name(channel)))
                        yield SwitchRequest(channel)
                        return
                if escalate := next((c for c in ordered if c.name == ESCALATE), None):
                    # A person wins over another agent: the customer asked for one, or no agent here can help.
                    reason = str((_parse_arguments(escalate.arguments) or {}).get("reason") or "").strip()
                    yield EscalateRequest(reason[:200] or ESCALATE_REASON)
                    return
                if handoff := next((c for c in ordered if c.name in handoffs), None):
                    # A handoff ends the turn; other calls in the same batch belong to the next agent's job.
                    arguments = _parse_arguments(handoff.arguments) or {}
                    yield HandoffRequest(handoffs[handoff.name].target, str(arguments.get("reason") or ""))
                    return
                messages.append(
                    {
                        "role": "assistant",
                        "content": "".join(text) or None,
                        "tool_calls": [
                            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                            for c in ordered
                        ],
                    }
                )
                for call in ordered:
                    content = json.dumps(run_tool(ctx, call.name, call.arguments), default=str)
                    messages.append({"role": "tool", "tool_call_id": call.id, "content": content})
            log.warning("openai policy: still calling tools after %d rounds; falling back", MAX_ROUNDS)
            yield TextDelta(_fallback(ctx, said))
        except openai.APIError as exc:
            _log_failure(exc)
            yield TextDelta(_fallback(ctx, said))
        except TimeoutError:
            log.warning("openai policy: the LLM endpoint did not begin answering within %g s; falling back",
                        self._timeout)
            yield TextDelta(_fallback(ctx, said))
        except VerificationNeeded:
            raise
        except Exception:
            # Anything else (an Entra ID token that cannot be had, a malformed chunk) must not reach the channel
            # either; the traceback goes to the log.
            log.exception("openai policy: unexpected failure calling the LLM; falling back")
            yield TextDelta(_fallback(ctx, said))


# Prompt -----------------------------------------------------------------------------------------------------------


def system_message(ctx: TurnContext) -> dict[str, str]:
    agent, scenario = ctx.agent, ctx.scenario
    lines = [
        f"You are the {agent.title} agent of {scenario.company}, talking with a customer over {ctx.channel}.",
        agent.instructions,
        "",
    ]
    if ctx.collected:
        lines.append("Facts already known about this customer:")
        for slot, value in ctx.collected.items():
            spec = scenario.slots.get(slot)
            lines.append(f"- {slot} ({spec.description if spec else slot}): {value}")
        lines.append(
            "Never ask the customer for any of these again: use them as they are. Tools receive them automatically."
        )
    else:
        lines.append("Nothing is known about this customer yet.")
    if ctx.summary:
        lines += ["", f"Summary of the conversation so far (earlier sessions or channels): {ctx.summary}"]
    lines += [
        "",
        "Use the tools to look things up; never invent account details. When a tool result says something is"
        " missing, ask the customer exactly that. If another agent should take over, call its handoff function.",
        "If the customer asks for a person (a human, a representative), or you cannot help with what they need"
        f" after trying, call {ESCALATE} with the reason in a few words: a person at our desk takes over with"
        " everything said so far. Do not say how long the wait is; the customer is told their place in line.",
    ]
    if guidance := switch_guidance(ctx):
        lines.append(guidance)
    if ctx.channel == "voice":
        lines.append("Your reply is spoken aloud: short plain sentences, no lists, no markdown.")
    else:
        lines.append("Keep replies short and conversational.")
    return {"role": "system", "content": "\n".join(lines)}


def switch_guidance(ctx: TurnContext) -> str:
    """What the model is told about moving channels this turn: offer them (the queue is long), take the customer's
    ask, or (for an agent whose tools always include the switch, as Foundry's do) leave it alone."""
    channels = " or ".join(_channel_name(c) for c in ctx.switch.channels)
    if ctx.switch.offer:
        return (f"The phone queue is long right now ({'; '.join(ctx.switch.reasons)}). Offer once to continue on "
                f"{channels}, where nothing needs repeating; if the customer agrees, call {SWITCH_CHANNEL}.")
    if ctx.switch.channels:
        return f"If the customer asks to continue on {channels}, call {SWITCH_CHANNEL}; no other channel."
    return ""


def history_messages(ctx: TurnContext) -> list[dict[str, str]]:
    roles = {"customer": "user", "agent": "assistant"}
    return [
        {"role": roles[turn.role], "content": turn.text}
        for turn in ctx.history[-HISTORY_TURNS:]
        if turn.role in roles and turn.text
    ]


#: A function tool, whatever the API's shape: its name, what it is for, and its parameters' JSON schema properties.
Function = tuple[str, str, dict[str, Any]]


def agent_functions(scenario: Scenario, agent: Any, *, known: Callable[[str], bool] = lambda slot: False,
                    channels: Sequence[str] = ()) -> list[Function]:
    """An agent's tools minus the parameters the record already fills (`known`), the queue check, the channel switch
    (when there are `channels` to switch to), its handoffs and the escalation to a person. The OpenAI policy sends
    them each turn; the Foundry sync writes them into the agent's version (shared/foundry/agents.py)."""
    functions: list[Function] = []
    for name in agent.tools:
        spec = scenario.tools[name]
        properties: dict[str, Any] = {}
        for param, pspec in spec.parameters.items():
            if "slot" in pspec:
                if known(pspec["slot"]):
                    continue  # call_tool fills it from the record; the model must not ask for it
                slot = scenario.slots[pspec["slot"]]
                properties[param] = {"type": "string", "description": slot.description}
                if slot.choices:
                    properties[param]["enum"] = list(slot.choices)
            else:
                properties[param] = {k: v for k, v in pspec.items() if k in ("type", "description", "enum")}
                properties[param].setdefault("type", "string")
        # No "required" list: requirements are any-of sets that JSON schema cannot say plainly, and call_tool
        # answers an unmet one with the question to ask.
        functions.append((name, spec.description, properties))
    functions.append((CHECK_QUEUE, "How busy the phone queue is, and whether to offer another channel.", {}))
    if channels:
        channel = {"channel": {"type": "string", "enum": list(channels)}}
        functions.append((SWITCH_CHANNEL, "The customer agreed to continue on another channel.", channel))
    for edge in agent.handoffs:
        reason = {"reason": {"type": "string", "description": "Why the customer needs this agent, in a few words."}}
        functions.append((f"{HANDOFF_PREFIX}{edge.target}", edge.when, reason))
    why = {"reason": {"type": "string", "description": "Why the customer needs a person, in a few words a person "
                      "at the desk reads (\"asked for a person\", \"wants to discuss a payment plan\")."}}
    functions.append((ESCALATE, "Hand the customer to a person at our desk: they asked for a person, or you "
                      "cannot help with what they need. They keep everything said so far.", why))
    return functions


def tool_schemas(ctx: TurnContext) -> list[dict[str, Any]]:
    """The active agent's functions in the Chat Completions shape."""
    return [_function(*function) for function in agent_functions(ctx.scenario, ctx.agent, known=ctx.known,
                                                                 channels=ctx.switch.channels)]


def _function(name: str, description: str, properties: dict[str, Any]) -> dict[str, Any]:
    parameters = {"type": "object", "properties": properties, "additionalProperties": False}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


# Tools -------------------------------------------------------------------------------------------------------------


@dataclass
class _PendingCall:
    """One tool call assembled from stream deltas: the first carries id and name, later ones argument fragments."""

    id: str = ""
    name: str = ""
    arguments: str = ""

    def add(self, part: Any) -> None:
        self.id = self.id or part.id or f"call_{part.index}"  # some compatible servers omit the id
        if part.function is not None:
            # Some compatible servers repeat the name on every chunk; only the arguments are fragments.
            self.name = self.name or part.function.name or ""
            self.arguments += part.function.arguments or ""


def run_tool(ctx: TurnContext, name: str, raw_arguments: str) -> dict[str, Any]:
    """Run one tool call from the model and say what happened, in a form the model can act on."""
    if name == CHECK_QUEUE:
        return {"ok": True, "data": ctx.switch.to_dict()}
    if name not in ctx.agent.tools:
        return {"ok": False, "error": f"There is no tool named {name!r}. Use only the tools you were given."}
    arguments = _parse_arguments(raw_arguments)
    if arguments is None:
        return {"ok": False, "error": "The arguments were not a valid JSON object. Call it again with valid JSON."}
    try:
        call = ctx.call_tool(name, arguments)
    except VerificationNeeded:
        raise  # the conversation core asks the customer to verify, then answers them
    except Exception:
        log.exception("openai policy: tool %s failed", name)
        return {"ok": False, "error": "The tool failed. Apologise and offer another way to help."}
    if call.missing is not None:
        return {"ok": False, "missing": list(call.missing.any_of), "ask": call.missing.ask}
    assert call.result is not None
    return {"ok": call.result.ok, "data": call.result.data, "say": call.result.say}


def _channel_name(channel: str) -> str:
    return {"whatsapp": "WhatsApp", "webchat": "web chat"}.get(channel, channel)


def _parse_arguments(raw: str) -> dict[str, Any] | None:
    try:
        parsed = json.loads(raw or "{}")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


# Failures ---------------------------------------------------------------------------------------------------------


def _fallback(ctx: TurnContext, said: str) -> str:
    # After a partial reply the fallback continues the same message, so it may need a separating space.
    return (" " if said and not said[-1].isspace() else "") + ctx.scenario.phrase("fallback")


def _log_failure(exc: openai.APIError) -> None:
    """Transient failures are warnings; ones that retrying cannot fix are errors that say what to check."""
    kind = type(exc).__name__
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        log.error(
            "openai policy: %s (%s) from the LLM endpoint; check AZURE_OPENAI_API_KEY / OPENAI_API_KEY, or that the"
            " managed identity has the 'Cognitive Services OpenAI User' role",
            kind,
            exc.status_code,
        )
    elif isinstance(exc, openai.NotFoundError):
        log.error(
            "openai policy: %s (404) from the LLM endpoint; check AZURE_OPENAI_ENDPOINT, AZURE_OPENAI_DEPLOYMENT and"
            " AZURE_OPENAI_API_VERSION, or OPENAI_BASE_URL and OPENAI_MODEL",
            kind,
        )
    elif isinstance(exc, openai.APIStatusError) and exc.status_code < 500 and exc.status_code != 429:
        log.error("openai policy: the LLM endpoint rejected the request: %s (%s)", kind, exc.status_code)
    else:  # timeouts, connection errors, 429, 5xx, an error event mid-stream: after the SDK's retries
        status = getattr(exc, "status_code", None)
        detail = f" ({status})" if status else ""
        log.warning("openai policy: LLM endpoint unavailable: %s%s; falling back", kind, detail)
