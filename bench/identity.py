"""identity: what checking a command's caller costs, with the token registry warm in memory.

Measured per call: `TokenVerifier.verify` (parse, registry lookup, SHA-256, constant-time
compare, expiry, groups from the directory file) and `Guard.admit` (that plus the
authorization table), timed one by one. The floor is the hash and compare alone, the
part no token scheme avoids. Beside them, a NATS request to a responder that replies at
once and to one that admits the caller's header token first: the difference is what
verification adds to a command as a client sees it. Target: admit p50 <= 0.2 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg

from bench.harness import machine, median, nats_server, percentile, print_machine, print_table, write_result
from events.identity import CreateToken, Grant, bearer, caller_headers
from services.directory import Directory
from services.identity.authority import Resource
from services.identity.bootstrap import SYSTEM
from services.identity.guard import Guard
from services.identity.registry import TokenRegistry
from services.identity.store import IdentityStore
from services.identity.tokens import create, credential, hash_secret, new_secret, new_token_id
from services.identity.verifier import TokenVerifier

NAME = "identity"
HELP = "cost of verifying a command's token (cached registry) and what it adds to a NATS command"
TARGET_MS = 0.2
RESOURCE = Resource(playbook="deploy-web", environment="staging")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokens", type=int, default=1000, help="tokens in the registry (default 1000)")
    parser.add_argument("--calls", type=int, default=20000, help="timed calls per measure and round (default 20000)")
    parser.add_argument("--requests", type=int, default=2000, help="timed NATS requests per kind and round")
    parser.add_argument("--repetitions", type=int, default=3, help="rounds; the median of their p50s counts")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


async def timings_ms(op: Callable[[], Awaitable[Any]], count: int) -> list[float]:
    """Each call timed alone; between calls the loop runs its other tasks, as a server's does between commands
    (the registry's freshness check among them: starve it a second and every token is refused)."""
    samples = []
    for _ in range(count):
        began = time.perf_counter_ns()
        await op()
        samples.append((time.perf_counter_ns() - began) / 1e6)
        await asyncio.sleep(0)
    return samples


async def hash_floor(secret: str, stored: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored)


async def issue_tokens(store: IdentityStore, registry: TokenRegistry, count: int) -> list[str]:
    credentials, last = [], 0
    now = datetime.now(timezone.utc)
    for i in range(count):
        token_id, secret = new_token_id(), new_secret()
        request = CreateToken(name=f"bench {i}", owner=f"user{i % 50}",
                              grants=(Grant(role="operator", playbooks=("deploy-*",), environments=("staging",)),))
        _, last = await store.change(token_id, lambda existing, t=token_id, s=secret, r=request: create(
            existing, r, token_id=t, secret_hash=hash_secret(s), by=SYSTEM, at=now))
        credentials.append(credential(token_id, secret))
    await registry.caught_up(last, timeout=60)
    return credentials


def stats(samples: list[float]) -> dict[str, float]:
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99), "count": len(samples)}


async def measure(url: str, tokens: int, calls: int, requests: int, repetitions: int, workdir: Path) -> dict[str, Any]:
    directory_file = workdir / "directory.yaml"
    directory_file.write_text("users:\n" + "".join(f"  user{i}: [ops-team]\n" for i in range(50)))
    groups = Directory(directory_file).groups_of
    nc = await nats.connect(url, name="bench-identity")
    client = await nats.connect(url, name="bench-client")
    store = IdentityStore(nc)
    await store.ensure_streams()
    registry = TokenRegistry(store)
    await registry.start()
    try:
        credentials = await issue_tokens(store, registry, tokens)
        chosen = credentials[len(credentials) // 2]
        verifier = TokenVerifier(registry, groups)
        guard = Guard(verifier, store.record_refusal, groups)
        secret = chosen.split("_", 2)[2]
        stored = hash_secret(secret)

        async def plain(msg: Msg) -> None:
            await msg.respond(b"ok")

        async def verified(msg: Msg) -> None:
            acting = await guard.admit(bearer(msg.headers), door="nats", action="start", resource=RESOURCE)
            await msg.respond(acting.actor.encode())

        await nc.subscribe("bench.identity.plain", cb=plain)
        await nc.subscribe("bench.identity.verified", cb=verified)
        await nc.flush()
        headers = caller_headers(chosen)

        async def ask(subject: str) -> None:
            await client.request(subject, b"", timeout=5, headers=headers)

        await timings_ms(lambda: guard.admit(chosen, door="nats", action="start", resource=RESOURCE), 1000)  # warm-up
        rounds: dict[str, list[dict[str, float]]] = {k: [] for k in ("floor", "verify", "admit", "plain", "verified")}
        for _ in range(repetitions):
            rounds["floor"].append(stats(await timings_ms(lambda: hash_floor(secret, stored), calls)))
            rounds["verify"].append(stats(await timings_ms(lambda: verifier.verify(chosen), calls)))
            rounds["admit"].append(stats(await timings_ms(
                lambda: guard.admit(chosen, door="nats", action="start", resource=RESOURCE), calls)))
            plain_ms, verified_ms = [], []
            for _ in range(requests):      # alternated, so that drift in the machine's load hits both alike
                plain_ms += await timings_ms(lambda: ask("bench.identity.plain"), 1)
                verified_ms += await timings_ms(lambda: ask("bench.identity.verified"), 1)
            rounds["plain"].append(stats(plain_ms))
            rounds["verified"].append(stats(verified_ms))
    finally:
        await registry.stop()
        await client.close()
        await nc.close()
    p50 = {kind: median([r["p50_ms"] for r in found]) for kind, found in rounds.items()}
    p99 = {kind: median([r["p99_ms"] for r in found]) for kind, found in rounds.items()}
    return {
        "benchmark": NAME,
        "tokens": tokens,
        "calls": calls,
        "requests": requests,
        "repetitions": repetitions,
        "machine": machine(),
        "rounds": rounds,
        "p50_ms": p50,
        "p99_ms": p99,
        "command_added_p50_ms": p50["verified"] - p50["plain"],
        "target_ms": TARGET_MS,
        "ratios": {"admit_p50_vs_target": p50["admit"] / TARGET_MS,
                   "admit_vs_hash_floor": p50["admit"] / p50["floor"],
                   "verified_request_vs_plain": p50["verified"] / p50["plain"]},
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    print(f"{result['tokens']} tokens in the registry; {result['calls']} timed calls and {result['requests']} "
          f"timed requests per kind, {result['repetitions']} rounds (median of p50s)")
    print()
    p50, p99 = result["p50_ms"], result["p99_ms"]
    names = {"floor": "SHA-256 + compare (floor)", "verify": "TokenVerifier.verify", "admit": "Guard.admit",
             "plain": "NATS request, no check", "verified": "NATS request, admitted"}
    print_table(["measure", "p50 ms", "p99 ms"], [(names[k], p50[k], p99[k]) for k in names])
    print()
    ratios = result["ratios"]
    print(f"ratios: admit p50 {ratios['admit_p50_vs_target']:.2f}x the {result['target_ms']} ms target, "
          f"{ratios['admit_vs_hash_floor']:.1f}x the hash floor; a command adds "
          f"{result['command_added_p50_ms']:.3f} ms p50 ({ratios['verified_request_vs_plain']:.2f}x a plain request)")


async def run(args: argparse.Namespace) -> int:
    if min(args.tokens, args.calls, args.requests, args.repetitions) < 1:
        raise SystemExit("--tokens, --calls, --requests and --repetitions must be at least 1")
    with nats_server() as url, tempfile.TemporaryDirectory(prefix="pb-bench-identity-") as workdir:
        result = await measure(url, args.tokens, args.calls, args.requests, args.repetitions, Path(workdir))
    report(result)
    print(f"result: {write_result(NAME, result, args.json)}")
    return 0
