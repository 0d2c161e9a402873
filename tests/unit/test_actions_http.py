"""http_request: real requests against a local aiohttp server."""
import asyncio
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.executor.actions import ActionResult, close_http_session, run_action

ARRIVED = web.AppKey("arrived", asyncio.Event)
RELEASE = web.AppKey("release", asyncio.Event)


async def status(request: web.Request) -> web.Response:
    headers = {"Retry-After": request.query["retry_after"]} if "retry_after" in request.query else {}
    return web.Response(status=int(request.match_info["code"]), text="nope", headers=headers)


async def echo(request: web.Request) -> web.Response:
    return web.json_response({
        "method": request.method,
        "content_type": request.content_type,
        "body": await request.text(),
        "query": dict(request.query),
    })


async def hang(request: web.Request) -> web.Response:
    request.app[ARRIVED].set()
    await request.app[RELEASE].wait()
    return web.Response(text="too late")


async def hello(request: web.Request) -> web.Response:
    return web.json_response({"hello": "world"})


async def plain(request: web.Request) -> web.Response:
    return web.Response(text="plain words")


async def big(request: web.Request) -> web.Response:
    return web.Response(body=b"x" * 3_000_000)


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/json")


async def set_cookie(request: web.Request) -> web.Response:
    response = web.Response(text="welcome")
    response.set_cookie("session", "s3cret")
    return response


async def cookies(request: web.Request) -> web.Response:
    return web.json_response(dict(request.cookies))


@pytest.fixture
async def server():
    app = web.Application()
    app[ARRIVED], app[RELEASE] = asyncio.Event(), asyncio.Event()
    app.router.add_get("/json", hello)
    app.router.add_get("/text", plain)
    app.router.add_get("/big", big)
    app.router.add_get("/status/{code}", status)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/hang", hang)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/login", set_cookie)
    app.router.add_get("/cookies", cookies)
    async with TestServer(app, host="127.0.0.1", port=0) as test_server:
        yield test_server
        app[RELEASE].set()
    await close_http_session()


async def request(timeout: float | None = None, **args) -> ActionResult:
    return await asyncio.wait_for(run_action("http_request", args, timeout=timeout), 30)


async def test_a_json_response_gives_status_headers_body_and_json(server):
    result = await request(url=str(server.make_url("/json")))
    assert result.ok
    assert result.outputs["status_code"] == 200
    assert result.outputs["headers"]["content-type"] == "application/json; charset=utf-8"
    assert result.outputs["body"] == '{"hello": "world"}'
    assert result.outputs["json"] == {"hello": "world"}
    assert result.outputs["elapsed_ms"] > 0


async def test_a_body_that_is_not_json_gives_no_json_output(server):
    result = await request(url=str(server.make_url("/text")))
    assert result.outputs["body"] == "plain words"
    assert "json" not in result.outputs


async def test_post_sends_a_json_body_and_query_params(server):
    result = await request(url=str(server.make_url("/echo")), method="post", json={"replicas": 3},
                           params={"dry_run": True, "n": 2})
    assert result.outputs["json"] == {"method": "POST", "content_type": "application/json",
                                      "body": '{"replicas":3}', "query": {"dry_run": "true", "n": "2"}}


async def test_data_is_sent_as_text(server):
    result = await request(url=str(server.make_url("/echo")), method="PUT", data="raw text")
    assert result.outputs["json"]["body"] == "raw text"


async def test_expect_status_decides_what_succeeds(server):
    assert (await request(url=str(server.make_url("/status/404")), expect_status=[200, 404])).ok
    result = await request(url=str(server.make_url("/json")), expect_status=201)
    assert not result.ok and result.category == "permanent"
    assert result.error.endswith("returned HTTP 200 OK, expected 201")


async def test_a_503_with_retry_after_is_temporary_and_says_when_to_retry(server):
    result = await request(url=str(server.make_url("/status/503?retry_after=7")))
    assert not result.ok
    assert result.category == "temporary"
    assert result.outputs["retry_after"] == 7.0
    # The path says which call failed; the query is left out, it may hold a token.
    assert result.error == (f"GET {server.make_url('/').origin()}/status/503?... returned HTTP 503 Service "
                            "Unavailable, expected a status below 400")


async def test_retry_after_may_be_an_http_date(server):
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    result = await request(url=str(server.make_url("/status/429")), params={"retry_after": later})
    assert result.category == "temporary"
    assert 60 < result.outputs["retry_after"] <= 120


@pytest.mark.parametrize("code, category", [
    (401, "authentication"), (403, "authorization"), (429, "temporary"), (500, "dependency"),
    (502, "dependency"), (404, "permanent"), (400, "permanent"),
])
async def test_failed_statuses_are_categorised(server, code, category):
    result = await request(url=str(server.make_url(f"/status/{code}")))
    assert (result.ok, result.category, result.outputs["status_code"]) == (False, category, code)


async def test_request_headers_never_appear_in_the_result(server):
    result = await request(url=str(server.make_url("/status/500")), headers={"Authorization": "Bearer hunter2"})
    assert "hunter2" not in repr(result)


async def test_the_error_names_the_path_and_never_the_query_string(server):
    result = await request(url=str(server.make_url("/status/500?token=hunter2")))
    assert "hunter2" not in result.error
    assert result.error.startswith(f"GET {server.make_url('/status/500').origin()}/status/500?... returned HTTP 500")


async def test_redirects_are_followed_unless_asked_not_to(server):
    assert (await request(url=str(server.make_url("/redirect")))).outputs["json"] == {"hello": "world"}
    result = await request(url=str(server.make_url("/redirect")), follow_redirects=False)
    assert result.outputs["status_code"] == 302
    assert result.outputs["headers"]["location"] == "/json"


async def test_cookies_are_not_carried_from_one_request_to_the_next(server):
    await request(url=str(server.make_url("/login")))
    assert (await request(url=str(server.make_url("/cookies")))).outputs["json"] == {}


async def test_a_big_body_is_cut_with_a_marker(server):
    result = await request(url=str(server.make_url("/big")))
    assert result.ok
    assert result.outputs["body"] == "x" * (1 << 20) + f"\n[... truncated after {1 << 20} bytes]"
    assert (await request(url=str(server.make_url("/json")), max_body_bytes=5)).outputs["body"] == (
        '{"hel\n[... truncated after 5 bytes]')


async def test_a_refused_connection_is_a_network_failure():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await request(url=f"http://127.0.0.1:{port}/")
    assert result == ActionResult(ok=False, category="network",
                                  error=f"GET http://127.0.0.1:{port}/: cannot connect: Connection refused")
    await close_http_session()


async def test_a_slow_server_times_out(server):
    result = await request(url=str(server.make_url("/hang")), timeout=0.2)
    assert result == ActionResult(ok=False, error="timed out after 0.2s", category="timeout")


async def test_cancelling_a_request_in_flight_propagates(server):
    task = asyncio.create_task(run_action("http_request", {"url": str(server.make_url("/hang"))}))
    await asyncio.wait_for(server.app[ARRIVED].wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


@pytest.mark.parametrize("url", ["ftp://example.com/file", "not a url", "/relative/path", "http://"])
async def test_an_invalid_url_is_a_configuration_failure(url):
    assert await request(url=url) == ActionResult(
        ok=False, category="configuration",
        error="http_request: 'url' must be an absolute http:// or https:// URL")


@pytest.mark.parametrize("args, problem", [
    ({"method": "GET /x"}, "'method' must be an HTTP method such as GET or POST, got 'GET /X'"),
    ({"headers": {"X-Token": "a\r\nInjected: 1"}}, "'headers': 'X-Token' contains a line break"),
    ({"expect_status": "200"}, "'expect_status' must be a status code or a list of them, got str"),
    ({"expect_status": [200, 999]}, "'expect_status' must be status codes between 100 and 599"),
    ({"json": {"when": object()}}, "'json' cannot be encoded as JSON"),
])
async def test_bad_values_are_configuration_failures_naming_the_arg(args, problem):
    result = await request(url="http://127.0.0.1:1/", **args)
    assert result.category == "configuration"
    assert result.error.startswith(f"http_request: {problem}")
