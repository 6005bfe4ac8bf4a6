"""The gateway's HTTP side: the ACS media WebSocket at `/media`, `GET /healthz` and `GET /stats`.

ACS connects to the transport URL the call function answered with, `{GATEWAY_PUBLIC_URL}/media?token=<t>`. The
token is checked before the upgrade is accepted: missing gets 401, one that does not verify (forged, expired, meant
for something else) gets 403, a session that does not exist 404, a closed one 409. A gateway carrying its
GATEWAY_MAX_CALLS conversations holds the next callers with hold music until a conversation ends (hold.py), and
only refuses (503) when it holds as many again. A call
has one media socket: the first accepted takes the call in SessionState, shared by every gateway replica, and any
later one for that call (at once or after, with this token or another) gets 409. Each refusal is logged and
affects no other call. The accepted call gets its call-control token, minted here from the media token's claims,
for the function app's call routes and handoffs (shared/calls/tokens.py says why here). `/healthz` is open (the
platform's probes); `/stats` takes GATEWAY_STATS_KEY as a bearer token, or without one answers direct loopback
requests only (docs/security.md). With several workers on a replica (workers.py), GATEWAY_MAX_CALLS is the
replica's and each worker carries its share, and /stats answers for the replica, worker by worker too.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from aiohttp import web

from media_gateway.call import Call
from media_gateway.endpoint import vad_params as turn_taking
from media_gateway.hold import CallSlots
from media_gateway.hooks import CallHooks, CallRef
from media_gateway.metrics import GatewayStats, merge_snapshots
from media_gateway.vad import VadParams
from shared.calls import tokens as call_tokens
from shared.calls.tokens import CONTROL_AUDIENCE, MEDIA_AUDIENCE
from shared.errors import NotFound, Unauthorized, Unavailable
from shared.models import SessionStatus

if TYPE_CHECKING:
    from media_gateway.engines import Engines
    from media_gateway.workers import WorkerPlace
    from shared.bootstrap import Services

log = logging.getLogger(__name__)

#: No media message comes near this (a 20 ms frame is ~1.3 KB of JSON); bigger ones are refused by aiohttp.
MAX_MESSAGE_BYTES = 64 * 1024
GOING_AWAY = 1001


class Gateway:
    def __init__(
        self,
        services: Services,
        engines: Engines,
        *,
        hooks: CallHooks | None = None,
        vad_params: VadParams | None = None,
        max_calls: int | None = None,
        max_held: int | None = None,
        stats: GatewayStats | None = None,
        place: WorkerPlace | None = None,
    ) -> None:
        self.services = services
        self.engines = engines
        self.hooks = hooks or CallHooks()
        self.vad_params = vad_params or turn_taking(services.settings, engines.turn)
        self.place = place  # this worker's place in the replica's pool; None when it is the only process
        self.max_calls = max_calls or services.settings.gateway_max_calls
        if place is not None and max_calls is None:
            self.max_calls = place.share_of(self.max_calls)
        self.max_held = self.max_calls if max_held is None else max_held  # callers on hold beyond those
        self.slots = CallSlots(self.max_calls)
        self.stats = stats or GatewayStats()
        self.stats.worker = place.index if place is not None else 0
        self.calls: dict[Call, web.WebSocketResponse] = {}

    async def media(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("token", "")
        if not token:
            return _refuse(request, 401, "a media token is required (?token=...)")
        try:
            ref = self._call_for(self.services.tokens.verify(token, MEDIA_AUDIENCE))
        except (Unauthorized, ValueError) as exc:
            return _refuse(request, 403, str(exc))
        if len(self.calls) >= self.max_calls + self.max_held:
            return _refuse(request, 503, f"this gateway is carrying its maximum of {self.max_calls} calls and "
                                         f"holding {self.max_held} more")
        try:
            session = await self.services.conversation.transcript(ref.session_id, ref.customer_id)
        except NotFound as exc:
            return _refuse(request, 404, str(exc))
        except Unavailable as exc:
            return _refuse(request, 503, str(exc))
        if session.status is not SessionStatus.ACTIVE:
            return _refuse(request, 409, f"the voice session is {session.status.value}")
        # No permessage-deflate: base64 audio barely compresses, and deflating 50 messages a second a call would
        # cost more CPU than everything else the gateway does with them.
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, autoping=True, heartbeat=30, compress=False)
        if not ws.can_prepare(request).ok:
            return _refuse(request, 400, "this is a WebSocket endpoint")
        try:
            if not await self._take_socket(ref):
                return _refuse(request, 409, f"call {ref.call_id} already has its media socket")
        except Unavailable as exc:
            return _refuse(request, 503, str(exc))
        await ws.prepare(request)
        call = Call(ws, ref, self.services.conversation, self.engines, self.hooks, self.stats, self.vad_params,
                    slots=self.slots, state=self.services.state, transport=request.transport)
        self.calls[call] = ws
        try:
            await call.run()
        finally:
            del self.calls[call]
        return ws

    def _call_for(self, media_claims: dict[str, Any]) -> CallRef:
        """The call a verified media token names, with the call-control token the gateway holds for it."""
        call = CallRef.from_claims(media_claims, token="")
        control = call_tokens.issue(self.services.tokens, self.services.settings, CONTROL_AUDIENCE,
                                    call=call.call_id, sid=call.session_id, cid=call.customer_id)
        return replace(call, token=control)

    async def _take_socket(self, ref: CallRef) -> bool:
        """Claim the call's one media socket, across replicas; False if it was claimed before.

        Taken last, once every other check has passed, so a refused attempt (a full gateway, a store hiccup) leaves
        the call free for ACS's next. The claim outlives the media token (it lasts as long as a call may), so
        neither a replay of the URL nor a second token for the call ever opens another socket on its audio."""
        return await self.services.state.mark_processed(
            f"media-socket:{ref.call_id}", self.services.settings.call_token_ttl_seconds
        )

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "calls": len(self.calls), "engines": self.engines.describe()})

    async def stats_view(self, request: web.Request) -> web.Response:
        """Process figures for the benchmark; `?reset=pacing` starts the frame-lateness histogram afresh.

        Counts and timings only, but the container's ingress is public: with GATEWAY_STATS_KEY set it takes that key
        as a bearer token, without it only a direct loopback request (a benchmark or an operator on the box)."""
        if refused := _stats_refusal(request, self.services.settings.gateway_stats_key):
            return refused
        reset = request.query.get("reset") == "pacing"
        siblings = await self.place.siblings_stats(reset) if self.place is not None else []
        return web.json_response(merge_snapshots([self._own_snapshot(reset), *siblings]))

    async def own_stats(self, request: web.Request) -> web.Response:
        """A worker's own figures, for its siblings: served on its Unix socket, which only they can reach."""
        return web.json_response(self._own_snapshot(request.query.get("reset") == "pacing"))

    def _own_snapshot(self, reset: bool) -> dict[str, Any]:
        if reset:
            self.stats.reset_pacing()
        return self.stats.snapshot()

    async def close_calls(self, app: web.Application) -> None:
        """On shutdown: tell every connected peer we are going away (ACS then ends or re-routes the call)."""
        await asyncio.gather(
            *(ws.close(code=GOING_AWAY, message=b"gateway shutting down") for ws in list(self.calls.values())),
            return_exceptions=True,
        )


_FORWARDED = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP")


def _stats_refusal(request: web.Request, key: str) -> web.Response | None:
    if key:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode()):
            return None
        return web.json_response({"error": "send Authorization: Bearer <GATEWAY_STATS_KEY>"}, status=401,
                                 headers={"WWW-Authenticate": "Bearer"})
    # A proxy on the same box would make a remote caller look local: anything forwarded is treated as remote.
    if request.remote in ("127.0.0.1", "::1") and not any(h in request.headers for h in _FORWARDED):
        return None
    return web.json_response({"error": "/stats is served on loopback only; set GATEWAY_STATS_KEY to read it remotely"},
                             status=403)


def _refuse(request: web.Request, status: int, reason: str) -> web.Response:
    log.warning("media connection from %s refused (%d): %s", request.remote, status, reason)
    return web.json_response({"error": reason}, status=status)


def create_worker_app(gateway: Gateway) -> web.Application:
    """What a worker's siblings read over its Unix socket: its own figures (`?reset=pacing` as on /stats)."""
    app = web.Application()
    app.router.add_get("/stats", gateway.own_stats)
    return app


def create_app(gateway: Gateway) -> web.Application:
    app = web.Application()
    app.router.add_get("/media", gateway.media)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_get("/stats", gateway.stats_view)
    app.on_shutdown.append(gateway.close_calls)
    return app
