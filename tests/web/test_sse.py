"""SSE: a late joiner gets snapshot + live changes with no gap and no duplicate, and a
reconnect with Last-Event-ID resumes exactly where it stopped."""
from __future__ import annotations


import aiohttp
import pytest

from events.commands import ApproveStep, StartRun
from tests.helpers import Message, noop, person, playbook_yaml, read_until, wait_for_end

pytestmark = pytest.mark.integration

GATED = playbook_yaml([noop("prepare"), noop("deploy", approval_gate={"required_approvers": ["bob"]}), noop("verify")])


def ids(seen: list[Message], kind: str = "event") -> list[int]:
    return [int(m.id) for m in seen if m.event == kind]


async def test_a_client_joining_mid_run_gets_every_event_once_in_order(engine, web_server) -> None:
    reply = await engine.send(StartRun(playbook=GATED))
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/api/runs/{reply.run_id}/stream") as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            waiting = await read_until(response, lambda m,
                                       _: m.event == "view" and m.data["status"] == "waiting_approval")
            await (await person(engine, "bob", "approver")).send(ApproveStep(run_id=reply.run_id, step_id="deploy"))
            rest = await read_until(response, lambda m, _: m.event == "event" and m.data["type"] == "RunCompleted")
    stored = [seq for seq, _ in await engine.events(reply.run_id)]
    assert ids(waiting + rest) == stored                       # no gap, no duplicate, in order
    assert [m.data["type"] for m in waiting + rest if m.event == "event"][0] == "RunStarted"
    assert any(line["kind"] == "ApprovalRequested" for m in waiting for line in m.data.get("timeline", []))


async def test_reconnecting_with_last_event_id_resumes_exactly(engine, web_server) -> None:
    reply = await engine.send(StartRun(playbook=GATED))
    url = f"{web_server.url}/api/runs/{reply.run_id}/stream"
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(url) as response:
            first = await read_until(response, lambda m,
                                     _: m.event == "event" and m.data["type"] == "ApprovalRequested")
        cut = ids(first)[-1]
        bob = await person(engine, "bob", "approver")
        await bob.send(ApproveStep(run_id=reply.run_id, step_id="deploy"))   # happens while away
        await wait_for_end(engine, reply.run_id)
        async with http.get(url, headers={"Last-Event-ID": str(cut)}) as response:
            rest = await read_until(response, lambda m, _: m.event == "event" and m.data["type"] == "RunCompleted")
    stored = [seq for seq, _ in await engine.events(reply.run_id)]
    assert ids(first) + ids(rest) == stored
    assert rest[-1].event == "event" and ids(rest)[0] == stored[stored.index(cut) + 1]


async def test_the_run_list_stream_is_a_snapshot_then_every_later_change(engine, web_server) -> None:
    early = [await engine.send(StartRun(playbook=GATED)) for _ in range(3)]
    await web_server.backend.projector.wait_caught_up(10)
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/api/runs/stream") as response:
            snapshot = (await read_until(response, lambda m, _: True))[0]
            assert snapshot.event == "snapshot"
            listed = {r["run_id"]: r for r in snapshot.data["runs"]}
            assert {r.run_id for r in early} <= set(listed)
            for r in early:                                      # approve: each run changes twice or more
                await (await person(engine, "bob", "approver")).send(ApproveStep(run_id=r.run_id, step_id="deploy"))
            carol = await person(engine, "carol", "operator")
            late = await carol.send(StartRun(playbook=playbook_yaml([noop("only")])))
            wanted = {r.run_id for r in early} | {late.run_id}

            def all_done(m: Message, seen: list[Message]) -> bool:
                for message in seen:
                    listed[message.data["run_id"]] = message.data
                return all(listed.get(run, {}).get("status") == "completed" for run in wanted)
            changes = await read_until(response, all_done)
    numbers = [int(m.id) for m in changes]
    assert numbers == sorted(set(numbers)) and numbers[0] > int(snapshot.id)   # increasing, none repeated
    assert listed[late.run_id]["actor"] == "carol"

    resume_from = numbers[len(numbers) // 2]
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/api/runs/stream",
                            headers={"Last-Event-ID": str(resume_from)}) as response:
            later = await read_until(response, lambda m, seen: int(m.id) >= numbers[-1])
    assert [int(m.id) for m in later] == [n for n in numbers if n > resume_from]
    assert all(m.event == "run" for m in later)


async def test_a_resume_point_the_server_no_longer_holds_gets_a_fresh_snapshot(engine, web_server) -> None:
    await engine.send(StartRun(playbook=playbook_yaml([noop("only")])))
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/api/runs/stream", headers={"Last-Event-ID": "99999999"}) as response:
            (first,) = await read_until(response, lambda m, _: True)
    assert first.event == "snapshot"


async def test_stream_errors_are_json(web_server, engine) -> None:
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        async with http.get(f"{web_server.url}/api/runs/nope/stream") as response:
            assert response.status == 404 and (await response.json())["error"]["code"] == "unknown_run"
        async with http.get(f"{web_server.url}/api/runs/stream", headers={"Last-Event-ID": "x1"}) as response:
            assert response.status == 400 and "Last-Event-ID" in (await response.json())["error"]["message"]


async def test_a_resume_point_that_is_no_stream_sequence_is_a_400_not_a_500(web_server, engine) -> None:
    """`str.isdigit` takes "²" and "١", which `int` refuses, and `int` refuses more than 4300 digits: each was a
    bare 500 (text, and a traceback in the log) on every stream."""
    run = await engine.send(StartRun(playbook=playbook_yaml([noop("only")])))
    await wait_for_end(engine, run.run_id)
    streams = ["/api/runs/stream", f"/api/runs/{run.run_id}/stream", f"/api/runs/{run.run_id}/stream?logs=1",
               f"/api/runs/{run.run_id}/logs/stream"]
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        for path in streams:
            for resume in ("\u00b2", "1.\u0661", "9" * 5000):
                if "." in resume and "logs" not in path:
                    continue
                separator = "&" if "?" in path else "?"
                async with http.get(f"{web_server.url}{path}{separator}last_event_id={resume}") as response:
                    assert (response.status, response.content_type) == (400, "application/json"), (path, resume[:8])
                    assert (await response.json())["error"]["code"] == "bad_request"


async def test_a_run_of_many_steps_followed_live_gets_its_view_paced_and_the_last_one_shows_the_end(
        engine, web_server) -> None:
    wide = playbook_yaml([noop(f"check-{i}", parallel_group="checks") for i in range(60)], name="wide")
    async with aiohttp.ClientSession(headers=engine.headers()) as http:
        reply = await engine.send(StartRun(playbook=wide))
        async with http.get(f"{web_server.url}/api/runs/{reply.run_id}/stream") as response:
            seen = await read_until(response, lambda m, _: m.event == "view" and m.data["status"] == "completed")
    events, views = ids(seen), [m for m in seen if m.event == "view"]
    assert len(events) == len(await engine.events(reply.run_id))       # every event, each as it was stored
    assert len(views) < len(events) / 4            # the whole run, not rebuilt and sent again after every event
    assert {step["status"] for step in views[-1].data["steps"]} == {"succeeded"}
