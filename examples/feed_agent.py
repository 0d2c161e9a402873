#!/usr/bin/env python3
"""An agent that follows Playbook Engine runs, the two ways, with nothing but nats-py.

    python examples/feed_agent.py watch [RUN]          live on the feed (plain NATS): at most once
    python examples/feed_agent.py process NAME [RUN]   a durable JetStream consumer NAME: every event
                                                       once, in order, from the first or where NAME stopped
    python examples/feed_agent.py logs RUN STEP [N]    attempt N's (1's) output lines, from the first,
                                                       then live ones, until its end (stream PB_LOGS)

Each event is printed as one JSON line, {"seq": ..., "event": {...}}. With RUN, `watch` stops at
the run's terminal event and `process` once the run has ended and nothing more is stored.
NATS_URL says where, with the agent's login: nats://pb-agent:PASSWORD@127.0.0.1:4222 (the password
is in $PLAYBOOK_HOME/credentials/nats-agent.json).
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator

import nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

# The event contract (README, "How a run ends").
TERMINAL = {"RunCompleted", "RunFailed", "RunCancelled", "RollbackCompleted", "RollbackFailed"}
REOPENING = {"RollbackStarted", "RunRetried"}      # written after an ending, they open the run again


async def watch(nc: nats.NATS, run: str = "*") -> AsyncIterator[tuple[int, dict]]:
    """The feed: subscribed when this returns, then every event stored from then on, in stream order.

    Core NATS delivers at most once: a slow or disconnected agent misses events. Catch up with
    `process` from the last sequence seen when that matters.
    """
    sub = await nc.subscribe(f"pb.feed.run.{run}.>")
    await nc.flush()
    return _feed(sub)


async def _feed(sub: Subscription) -> AsyncIterator[tuple[int, dict]]:
    last = 0
    try:
        async for msg in sub.messages:
            headers = msg.headers or {}
            if headers.get("Nats-Stream") != "PB_RUNS":
                continue          # not republished by the server (say, a consumer someone pointed here)
            seq = int(headers["Nats-Sequence"])
            if seq > last:
                last = seq
                yield seq, json.loads(msg.data)
    finally:
        await sub.unsubscribe()


async def process(nc: nats.NATS, name: str, run: str = "*") -> AsyncIterator[tuple[int, dict, int, Msg]]:
    """Every event from a durable consumer `name`: (sequence, event, how many more are stored, message).

    Acknowledge the message once the event is handled: one that is not (the agent crashed) comes
    again. Keep the last sequence handled beside what handling it changed, skip what is not above
    it, and each event takes effect exactly once.
    """
    sub = await nc.jetstream().pull_subscribe(
        f"pb.run.{run}.>", durable=name, stream="PB_RUNS",
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL, ack_wait=30))
    while True:
        try:
            batch = await sub.fetch(100, timeout=5)
        except nats.errors.TimeoutError:
            continue              # nothing new yet
        for msg in batch:
            yield msg.metadata.sequence.stream, json.loads(msg.data), msg.metadata.num_pending, msg


async def output(nc: nats.NATS, run: str, step: str, attempt: int = 1) -> AsyncIterator[dict]:
    """An attempt's output lines from the first, then live ones, then its OutputEnded; once each, in order.

    PB_LOGS keeps every line a while, so joining half-way loses nothing. The consumer is this
    reader's own (a fresh name), acknowledges nothing, and is deleted when the reading stops.
    """
    sub = await nc.jetstream().pull_subscribe(
        f"pb.output.{run}.{step}.{attempt}", stream="PB_LOGS",
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL, inactive_threshold=60))
    try:
        while True:
            try:
                batch = await sub.fetch(100, timeout=5)
            except nats.errors.TimeoutError:
                continue          # the step prints nothing right now
            for msg in batch:
                line = json.loads(msg.data)
                yield line
                if line["type"] == "OutputEnded":
                    return
    finally:
        await sub.unsubscribe()


async def main(argv: list[str]) -> int:
    if len(argv) < 1 or argv[0] not in ("watch", "process", "logs") or (argv[0] == "process" and len(argv) < 2) or (
            argv[0] == "logs" and len(argv) < 3):
        print(__doc__, file=sys.stderr)
        return 2
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    try:
        if argv[0] == "logs":
            async for line in output(nc, argv[1], argv[2], int(argv[3]) if len(argv) > 3 else 1):
                print(json.dumps(line), flush=True)
        elif argv[0] == "watch":
            run = argv[1] if len(argv) > 1 else None
            print(json.dumps({"watching": run or "*"}), flush=True)
            async for seq, event in await watch(nc, run or "*"):
                print(json.dumps({"seq": seq, "event": event}), flush=True)
                if run and event["type"] in TERMINAL:
                    return 0
        else:
            run = argv[2] if len(argv) > 2 else None
            ended = False
            async for seq, event, pending, msg in process(nc, argv[1], run or "*"):
                print(json.dumps({"seq": seq, "event": event}), flush=True)
                await msg.ack()
                ended = event["type"] in TERMINAL or (ended and event["type"] not in REOPENING)
                if run and ended and not pending:
                    return 0
        return 0
    finally:
        await nc.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
