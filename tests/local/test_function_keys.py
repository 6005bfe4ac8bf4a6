"""Function keys on the local host (LOCAL_FUNCTION_KEY): a tiny inline app with one route of each auth level,
served by a real Host on a free port and driven over HTTP, with and without a key to check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import azure.functions as func
import pytest_asyncio

from local.host import Host

#: Shaped like an Azure function key (base64, so `=` and `/` that ?code= must carry URL-encoded).
KEY = "Zm9vYmFy/c2VjcmV0+a2V5=="


def keyed_app(ran: list[str]) -> func.FunctionApp:
    """Routes of each level; `ran` records which functions actually ran (a refused request must run none)."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="open", methods=["GET"])
    def open_route(req: func.HttpRequest) -> func.HttpResponse:
        ran.append("open")
        return func.HttpResponse("open")

    @app.route(route="operator", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    def operator(req: func.HttpRequest) -> func.HttpResponse:
        ran.append("operator")
        return func.HttpResponse(f"took {len(req.get_body())} bytes")

    @app.route(route="admin", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
    def admin(req: func.HttpRequest) -> func.HttpResponse:
        ran.append("admin")
        return func.HttpResponse("admin")

    return app


@pytest_asyncio.fixture(scope="module")
async def keyed() -> AsyncIterator[tuple[Host, list[str]]]:
    ran: list[str] = []
    served = Host(keyed_app(ran), function_key=KEY)
    await served.start(port=0)
    yield served, ran
    await served.stop()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_function_route_without_the_key_is_refused_before_the_function_runs(keyed, http) -> None:
    host, ran = keyed
    ran.clear()
    bare = await http.post(f"{host.url}/api/operator", data=b"x" * 1000)
    wrong = await http.post(f"{host.url}/api/operator", headers={"x-functions-key": KEY[:-1] + "A"})
    wrong_code = await http.post(f"{host.url}/api/operator", params={"code": "guess"})
    empty = await http.post(f"{host.url}/api/operator", headers={"x-functions-key": ""})

    assert [r.status for r in (bare, wrong, wrong_code, empty)] == [401, 401, 401, 401]
    assert "x-functions-key" in (await bare.json())["error"]
    assert (await wrong.json())["error"] == "the function key is not valid"
    assert ran == [], "the platform refuses before the app runs"


async def test_the_right_key_in_the_header_or_as_code_reaches_the_function(keyed, http) -> None:
    host, ran = keyed
    ran.clear()
    by_header = await http.post(f"{host.url}/api/operator", headers={"x-functions-key": KEY}, data=b"abc")
    by_code = await http.post(f"{host.url}/api/operator", params={"code": KEY}, data=b"abcd")  # aiohttp encodes += /

    assert (by_header.status, await by_header.text()) == (200, "took 3 bytes")
    assert (by_code.status, await by_code.text()) == (200, "took 4 bytes")
    assert ran == ["operator", "operator"]


async def test_anonymous_routes_answer_anyone_and_admin_routes_nobody_without_a_master_key(keyed, http) -> None:
    host, ran = keyed
    ran.clear()
    anonymous = await http.get(f"{host.url}/api/open")
    admin = await http.get(f"{host.url}/api/admin", headers={"x-functions-key": KEY})

    assert (anonymous.status, await anonymous.text()) == (200, "open")
    assert admin.status == 401 and "master key" in (await admin.json())["error"]
    assert ran == ["open"]


async def test_an_unknown_path_or_method_is_still_404_or_405_not_401(keyed, http) -> None:
    """The key check comes after the route match: what no function serves answers as it did without keys."""
    host, _ = keyed
    assert (await http.get(f"{host.url}/api/nowhere")).status == 404
    assert (await http.get(f"{host.url}/api/operator")).status == 405


async def test_without_a_key_configured_every_route_is_open_as_with_core_tools(http) -> None:
    ran: list[str] = []
    served = Host(keyed_app(ran))
    await served.start(port=0)
    try:
        statuses = [(await http.post(f"{served.url}/api/operator")).status,
                    (await http.get(f"{served.url}/api/admin")).status]
    finally:
        await served.stop()
    assert statuses == [200, 200] and ran == ["operator", "admin"]


async def test_a_key_of_undecodable_bytes_is_refused_with_401_not_a_500(keyed) -> None:
    """Raw bytes on the wire, since an HTTP client would not send them: not UTF-8 in the header, a lone surrogate in
    ?code=. Either is a wrong key, never a crash."""
    host, ran = keyed
    ran.clear()
    address, port = host.url.removeprefix("http://").split(":")
    heads = [b"POST /api/operator HTTP/1.1\r\nx-functions-key: \xff\xfe\xed\xa0\x80\r\n",
             b"POST /api/operator?code=%ED%A0%80%FF HTTP/1.1\r\n"]
    for head in heads:
        reader, writer = await asyncio.open_connection(address, int(port))
        writer.write(head + b"Host: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        status_line = (await reader.read()).split(b"\r\n", 1)[0]
        writer.close()
        assert status_line == b"HTTP/1.1 401 Unauthorized", (head, status_line)
    assert ran == []
