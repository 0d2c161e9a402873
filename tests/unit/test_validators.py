"""Pre-step validators against real things: a local HTTP server, sockets, files, the disk, /proc, processes."""
from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from events.playbook import (CommandSucceeds, DiskSpace, FileExists, HttpStatus, MemoryUsage, PortOpen,
                             Validator)
from services.errors import PlaybookError, UnresolvedReference
from services.executor.actions import close_http_session
from services.executor.validators import run_validators
from services.playbook.interpolate import Context


async def check(*validators: Validator, ctx: Context | None = None) -> str | None:
    return await run_validators(list(validators), ctx or Context())


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]))

    app = web.Application()
    app.router.add_get("/status/{code}", status)
    async with TestServer(app, host="127.0.0.1", port=0) as test_server:
        yield test_server
    await close_http_session()


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return sock.getsockname()[1]


async def test_no_validators_pass():
    assert await check() is None


async def test_http_status_passes_on_the_expected_status_and_fails_on_another(server):
    assert await check(HttpStatus(url=str(server.make_url("/status/200")))) is None
    assert await check(HttpStatus(url=str(server.make_url("/status/503")), expected_status=[200, 503])) is None
    problem = await check(HttpStatus(url=str(server.make_url("/status/503"))))
    assert problem is not None and problem.startswith("validator 1 (http_status): GET http://127.0.0.1:")
    assert problem.endswith("returned HTTP 503 Service Unavailable, expected 200")


async def test_port_open_passes_on_a_listening_port_and_fails_on_a_closed_one(listening, closed_port):
    assert await check(PortOpen(port=listening)) is None
    assert await check(PortOpen(port=closed_port)) == (
        f"validator 1 (port_open): cannot connect to 127.0.0.1:{closed_port}: Connection refused")


async def test_a_port_out_of_range_is_refused_before_connecting():
    assert await check(PortOpen(port=70000)) == "validator 1 (port_open): port 70000 is not between 1 and 65535"


async def test_file_exists_tells_files_from_directories(tmp_path: Path):
    (tmp_path / "release.tar").write_text("x")
    assert await check(FileExists(path=str(tmp_path / "release.tar"), kind="file"),
                       FileExists(path=str(tmp_path), kind="directory"), FileExists(path=str(tmp_path))) is None
    assert await check(FileExists(path=str(tmp_path), kind="file")) == (
        f"validator 1 (file_exists): {tmp_path} is not a regular file")
    assert await check(FileExists(path=str(tmp_path / "release.tar"), kind="directory")) == (
        f"validator 1 (file_exists): {tmp_path / 'release.tar'} is not a directory")
    assert await check(FileExists(path=str(tmp_path / "missing"))) == (
        f"validator 1 (file_exists): {tmp_path / 'missing'} does not exist")


async def test_disk_space_compares_free_space_with_the_thresholds(tmp_path: Path):
    assert await check(DiskSpace(path=str(tmp_path), min_free_gb=0, min_free_percent=0)) is None
    problem = await check(DiskSpace(path=str(tmp_path), min_free_gb=10**9))
    assert problem is not None and problem.startswith("validator 1 (disk_space): only ")
    assert problem.endswith(f"GB free on {tmp_path}, need 1e+09 GB")
    problem = await check(DiskSpace(path=str(tmp_path), min_free_percent=101))
    assert problem is not None and problem.endswith(f"% free on {tmp_path}, need 101%")


async def test_disk_space_needs_a_threshold():
    assert await check(DiskSpace()) == (
        "validator 1 (disk_space): give 'min_free_gb' or 'min_free_percent' (or both)")


async def test_disk_space_on_a_missing_path_names_it(tmp_path: Path):
    assert await check(DiskSpace(path=str(tmp_path / "gone"), min_free_gb=0)) == (
        f"validator 1 (disk_space): No such file or directory: {tmp_path / 'gone'}")


async def test_memory_usage_compares_used_memory_with_the_limit():
    assert await check(MemoryUsage(max_used_percent=100)) is None
    problem = await check(MemoryUsage(max_used_percent=0))
    assert problem is not None and problem.startswith("validator 1 (memory_usage): ")
    assert problem.endswith("% of memory is in use, limit 0%")


async def test_command_succeeds_judges_the_exit_code():
    assert await check(CommandSucceeds(command="true"), CommandSucceeds(argv=["sh", "-c", "exit 3"],
                                                                        expected_returncode=3)) is None
    assert await check(CommandSucceeds(command="false")) == (
        "validator 1 (command_succeeds): command exited with code 1 (expected exit code 0)")
    assert await check(CommandSucceeds(command="echo broken >&2; exit 2")) == (
        "validator 1 (command_succeeds): command exited with code 2: broken (expected exit code 0)")


async def test_command_succeeds_needs_exactly_one_program():
    assert await check(CommandSucceeds()) == (
        "validator 1 (command_succeeds): give exactly one of 'command' and 'argv'")


async def test_a_slow_command_fails_at_its_timeout():
    assert await check(CommandSucceeds(command="sleep 10", timeout_seconds=0.2)) == (
        "validator 1 (command_succeeds): timed out after 0.2s")


async def test_the_first_failure_is_named_by_position_and_type_with_the_users_message(tmp_path: Path):
    problem = await check(FileExists(path=str(tmp_path)), DiskSpace(path=str(tmp_path), min_free_gb=10**9,
                                                                    message="docker needs room for images"),
                          CommandSucceeds(command=f"touch {tmp_path}/ran"))
    assert problem is not None and problem.startswith("validator 2 (disk_space): only ")
    assert problem.endswith(" — docker needs room for images")
    assert not (tmp_path / "ran").exists()   # validators after a failed one do not run


async def test_parameters_are_interpolated_into_every_text_field(tmp_path: Path):
    ctx = Context(parameters={"dir": str(tmp_path), "name": "app"})
    (tmp_path / "app.conf").write_text("x")
    assert await check(FileExists(path="${dir}/${name}.conf", kind="file"), ctx=ctx) is None
    assert await check(FileExists(path="${dir}/${name}.yaml", message="${name} is not configured"), ctx=ctx) == (
        f"validator 1 (file_exists): {tmp_path}/app.yaml does not exist — app is not configured")


async def test_a_hostile_parameter_reaches_the_command_as_one_quoted_word(tmp_path: Path):
    ctx = Context(parameters={"target": f"x; touch {tmp_path}/pwned"})
    assert await check(CommandSucceeds(command="test -n ${target}"), ctx=ctx) is None
    assert not (tmp_path / "pwned").exists()


async def test_an_unknown_reference_raises_and_names_the_validator():
    with pytest.raises(UnresolvedReference, match=r"^validator 2 \(file_exists\): \$\{nope\}: no parameter"):
        await check(MemoryUsage(max_used_percent=100), FileExists(path="${nope}"))


async def test_a_reference_that_brings_the_wrong_type_is_a_configuration_error():
    with pytest.raises(PlaybookError, match=r"^validator 1 \(file_exists\): after interpolation"):
        await check(FileExists(path="${paths}"), ctx=Context(parameters={"paths": ["/a", "/b"]}))
