"""`python -m local.smoke --url <function app> [--gateway wss://...] [--key <function key>]`: is the deployment working?

For ops after `azd up` (docs/deploy.md, "Check it"), and for `make smoke` against a local `make run`. It talks to the
app the way its callers do, over HTTP and a WebSocket, and prints one line per check:

    OK    a check that passed, with what it saw
    FAIL  a check that failed, with what it got and where to look
    TODO  what it cannot check from outside (with the command or portal page that does), and what needs a person

The exit code is 0 only if no check failed. A run starts one web chat session and sends it one message (a customer
record that expires like any anonymous visitor's), and opens one media socket without a token, which the gateway
refuses and logs as a refused connection. Nothing else is written.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from shared.errors import ScenarioError
from shared.scenario import Scenario, load_scenario

Status = Literal["OK", "FAIL", "TODO"]

#: What the smoke check says to the agent; it reads as a test in the transcript and a model answers it briefly.
TURN_TEXT = "Hello, this is a deployment check. Could you tell me what you can help me with?"
ROUTE_PREFIX = "/api"  # host.json extensions.http.routePrefix
EVENT_SUBSCRIPTIONS = ("incoming-call", "whatsapp-events", "sms-events")  # infra/modules/events.bicep


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<5} {self.name:<20} {self.detail}"


@dataclass
class Smoke:
    """One run against one deployment; each check appends its line."""

    url: str
    gateway: str
    key: str
    scenario: Scenario | None
    timeout: float
    wait: float
    checks: list[Check] = field(default_factory=list)

    def add(self, status: Status, name: str, detail: str) -> None:
        check = Check(status, name, detail)
        self.checks.append(check)
        print(check.line(), flush=True)

    @property
    def failed(self) -> bool:
        return any(c.status == "FAIL" for c in self.checks)

    async def run(self) -> None:
        print(f"Switchboard smoke check: {self.url}" + (f" and {self.gateway}" if self.gateway else ""), flush=True)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            if await self.function_app(http):
                await self.function_key(http)
                replies = await self.web_chat(http)
                self.model(replies)
            else:
                for name in ("function key", "web chat", "model"):
                    self.add("FAIL", name, "not checked: the function app did not answer")
            await self.media_gateway(http)
        self.event_grid()
        self.needs_a_person()
        counts = {s: sum(c.status == s for c in self.checks) for s in ("OK", "FAIL", "TODO")}
        print(f"Result: {counts['OK']} OK, {counts['FAIL']} FAIL, {counts['TODO']} TODO", flush=True)

    # The function app ---------------------------------------------------------------------------------------------

    async def function_app(self, http: aiohttp.ClientSession) -> bool:
        """The API document, anonymous on every deployment. A Flex app that is starting answers 5xx for a moment,
        so those are retried for --wait seconds; a refused connection or an unknown host is not."""
        url = f"{self.url}{ROUTE_PREFIX}/openapi.json"
        started = time.monotonic()
        deadline = started + self.wait
        while True:
            try:
                async with http.get(url) as response:
                    body = await _json_or_text(response)
                    if response.status < 500 or time.monotonic() >= deadline:
                        break
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.add("FAIL", "function app", f"cannot reach {url}: {_reason(exc)}")
                return False
            await asyncio.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        elapsed = time.monotonic() - started
        if response.status == 200 and isinstance(body, dict) and "openapi" in body:
            title = body.get("info", {}).get("title", "the API document")
            self.add("OK", "function app", f"GET {ROUTE_PREFIX}/openapi.json answered 200 ({title}) in {elapsed:.1f} s")
            return True
        self.add("FAIL", "function app", f"GET {url} answered {response.status}, not the API document: {_excerpt(body)}"
                 " (is the code deployed? `azd deploy functions`; logs: Application Insights)")
        return False

    async def function_key(self, http: aiohttp.ClientSession) -> None:
        """A function-key route that reads the stores: the key works and the app reaches Cosmos DB (or Redis)."""
        if not self.key:
            self.add("TODO", "function key", "not checked: pass --key \"$(az functionapp keys list -g <resource group> "
                     "-n <function app> --query functionKeys.default -o tsv)\"")
            return
        url = f"{self.url}{ROUTE_PREFIX}/ops/queue"
        try:
            async with http.get(url, headers={"x-functions-key": self.key}) as response:
                body = await _json_or_text(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.add("FAIL", "function key", f"GET {url}: {_reason(exc)}")
            return
        if response.status == 200 and isinstance(body, dict):
            waiting = body.get("queue", {}).get("waiting", "?")
            self.add("OK", "function key", f"GET {ROUTE_PREFIX}/ops/queue answered 200: the key works and the app "
                     f"reads its state store ({waiting} waiting for a person)")
        elif response.status == 401:
            self.add("FAIL", "function key", f"GET {ROUTE_PREFIX}/ops/queue answered 401: the key was refused")
        else:
            self.add("FAIL", "function key", f"GET {ROUTE_PREFIX}/ops/queue answered {response.status}: "
                     f"{_excerpt(body)} (can the identity reach Cosmos DB? Application Insights has the error)")

    async def web_chat(self, http: aiohttp.ClientSession) -> list[str] | None:
        """A new web chat session and one message, as the chat page sends them; the reply texts, or None."""
        base = f"{self.url}{ROUTE_PREFIX}/webchat/sessions"
        try:
            async with http.post(base, json={}) as response:
                created = await _json_or_text(response)
            if response.status != 201 or not isinstance(created, dict) or "token" not in created:
                self.add("FAIL", "web chat", f"POST {ROUTE_PREFIX}/webchat/sessions answered {response.status}: "
                         f"{_excerpt(created)}")
                return None
            started = time.monotonic()
            headers = {"Authorization": f"Bearer {created['token']}"}
            async with http.post(f"{base}/{created['session_id']}/messages", json={"text": TURN_TEXT},
                                 headers=headers) as response:
                turn = await _json_or_text(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.add("FAIL", "web chat", f"{base}: {_reason(exc)}")
            return None
        if response.status != 200 or not isinstance(turn, dict) or not turn.get("replies"):
            self.add("FAIL", "web chat", f"a message to session {created['session_id']} answered {response.status}: "
                     f"{_excerpt(turn)}")
            return None
        replies = [str(r.get("text", "")) for r in turn["replies"]]
        self.add("OK", "web chat", f"session {created['session_id']}: {turn.get('agent')} answered in "
                 f"{time.monotonic() - started:.1f} s: {_excerpt(' '.join(replies))}")
        return replies

    def model(self, replies: list[str] | None) -> None:
        """The app answers with the scenario's fallback line when the model endpoint fails: any other answer to the
        turn came from the agent (with the model, when the app runs the openai policy)."""
        if replies is None:
            self.add("FAIL", "model", "not checked: the web chat turn failed")
            return
        if self.scenario is None:
            self.add("TODO", "model", "not checked: the scenario is not in this checkout (pass --scenario <folder>)")
            return
        fallback = self.scenario.phrase("fallback")
        if any(fallback in reply for reply in replies):
            self.add("FAIL", "model", f"the turn got the scenario's fallback line ({fallback!r}): the model endpoint "
                     "failed. Check the AZURE_OPENAI_DEPLOYMENT deployment exists and the identity holds Cognitive "
                     "Services OpenAI User; the error is in Application Insights (traces from openai_policy)")
            return
        self.add("OK", "model", "the turn was answered without the fallback line")

    # The media gateway --------------------------------------------------------------------------------------------

    async def media_gateway(self, http: aiohttp.ClientSession) -> None:
        if not self.gateway:
            self.add("TODO", "media gateway",
                     "not checked: pass --gateway \"$(azd env get-value GATEWAY_PUBLIC_URL)\"")
            return
        health = _http_url(self.gateway, "/healthz")
        try:
            async with http.get(health) as response:
                body = await _json_or_text(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.add("FAIL", "gateway health", f"cannot reach {health}: {_reason(exc)}")
        else:
            if response.status == 200 and isinstance(body, dict) and body.get("status") == "ok":
                self.add("OK", "gateway health", f"GET /healthz answered 200 ({body.get('calls', 0)} calls now)")
            else:
                self.add("FAIL", "gateway health", f"GET {health} answered {response.status}: {_excerpt(body)} "
                         "(not the gateway's answer: is the placeholder still running? `azd deploy gateway`)")
        await self.media_socket(http)

    async def media_socket(self, http: aiohttp.ClientSession) -> None:
        """ACS's way in: a WebSocket to /media. Without a token the gateway refuses it with 401 before the upgrade,
        which proves the socket path (TLS, ingress, port) reaches the gateway without starting a call."""
        url = f"{self.gateway.rstrip('/')}/media"
        try:
            async with http.ws_connect(url) as ws:
                await ws.close()
            self.add("FAIL", "gateway socket", f"{url} accepted a WebSocket without a media token")
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status == 401:
                self.add("OK", "gateway socket", f"{urlsplit(url).scheme} reachable: /media refuses a socket without "
                         "a media token (401), as it should")
            else:
                self.add("FAIL", "gateway socket", f"{url} answered {exc.status} to a WebSocket without a token "
                         "(the gateway answers 401)")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.add("FAIL", "gateway socket", f"cannot reach {url}: {_reason(exc)}")

    # What cannot be checked from outside --------------------------------------------------------------------------

    def event_grid(self) -> None:
        self.add("TODO", "event grid", f"no route of the app reports them: check {', '.join(EVENT_SUBSCRIPTIONS)} "
                 "in the portal (Event Grid system topic > Event Subscriptions, each Succeeded), or run: "
                 "az eventgrid system-topic event-subscription list -g \"$(azd env get-value AZURE_RESOURCE_GROUP)\" "
                 "--system-topic-name \"$(azd env get-value AZURE_EVENTGRID_SYSTEM_TOPIC)\" "
                 "--query \"[].{name:name, state:provisioningState}\" -o table")

    def needs_a_person(self) -> None:
        print("Still needs a person (docs/deploy.md):", flush=True)
        self.add("TODO", "phone number", "buy one on the ACS resource (Phone numbers > Get), with calling; no call "
                 "reaches the app until then (section 2)")
        self.add("TODO", "whatsapp channel", "connect the WhatsApp Business number on the ACS resource, then "
                 "`azd env set WHATSAPP_CHANNEL_ID <id>` and `azd provision` (section 3)")
        templates = self._template_names()
        self.add("TODO", "whatsapp templates", "create and get Meta's approval for "
                 + (", ".join(templates) if templates else "the scenario's message templates") + " (section 3)")
        self.add("TODO", "sms number", "optional: a number with SMS, verified, then "
                 "`azd env set ACS_SMS_FROM <number>` (docs/sms.md)")
        self.add("TODO", "desk sign-in", "optional: an Entra app registration with the desk roles, then "
                 "`azd env set SWITCHBOARD_DESK_AUTH_CLIENT_ID <client id>` (docs/desk.md)")

    def _template_names(self) -> list[str]:
        if self.scenario is None:
            return []
        spec = self.scenario.whatsapp
        chosen = (spec.template, spec.invite, spec.link_invite, spec.reminder, spec.code)
        return sorted({t.name for t in chosen if t is not None})


def _http_url(ws_url: str, path: str) -> str:
    """The gateway's HTTP address for a path: wss -> https, ws -> http."""
    parts = urlsplit(ws_url.rstrip("/"))
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path + path, "", ""))


async def _json_or_text(response: aiohttp.ClientResponse) -> Any:
    text = await response.text(errors="replace")
    try:
        return await response.json(content_type=None) if text.strip() else ""
    except ValueError:
        return text


def _excerpt(body: Any, limit: int = 120) -> str:
    text = " ".join(str(body).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within the timeout (--timeout)"
    return " ".join(str(exc).split()) or type(exc).__name__


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local.smoke",
        description="Check a deployed Switchboard (or a local `make run`): one line per check, exit 1 if any failed.",
    )
    parser.add_argument("--url", required=True,
                        help="the function app's base URL, e.g. https://func-xxx.azurewebsites.net "
                             "(azd env get-value SWITCHBOARD_PUBLIC_URL)")
    parser.add_argument("--gateway", default="",
                        help="the media gateway's WebSocket base URL, e.g. "
                             "wss://ca-gw-xxx.<region>.azurecontainerapps.io (azd env get-value GATEWAY_PUBLIC_URL)")
    parser.add_argument("--key", default="", help="a function key, to check a function-key route (/api/ops/queue)")
    parser.add_argument("--scenario", default="utilities",
                        help="the scenario the app runs (SWITCHBOARD_SCENARIO), for its fallback line")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for each request (default 60)")
    parser.add_argument("--wait", type=float, default=60.0,
                        help="seconds to keep asking a function app that answers 5xx while it starts (default 60)")
    args = parser.parse_args(argv)
    if urlsplit(args.url).scheme not in ("http", "https") or not urlsplit(args.url).netloc:
        parser.error(f"--url {args.url!r} is not an http(s) address: pass the function app's base URL "
                     "(azd env get-value SWITCHBOARD_PUBLIC_URL)")
    if args.gateway and (urlsplit(args.gateway).scheme not in ("ws", "wss") or not urlsplit(args.gateway).netloc):
        parser.error(f"--gateway {args.gateway!r} is not a ws(s) address: pass the gateway's WebSocket base URL "
                     "(azd env get-value GATEWAY_PUBLIC_URL)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        scenario: Scenario | None = load_scenario(args.scenario)
    except ScenarioError:
        scenario = None
    smoke = Smoke(url=args.url.rstrip("/"), gateway=args.gateway.rstrip("/"), key=args.key, scenario=scenario,
                  timeout=args.timeout, wait=args.wait)
    asyncio.run(smoke.run())
    return 1 if smoke.failed else 0


if __name__ == "__main__":
    sys.exit(main())
