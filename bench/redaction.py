"""redaction: hiding 10 secrets in every form from a 64 KiB step output, against a plain replace of the values.

The workload is what the executor does to a big output of an attempt that holds secrets:
`Redactor.text` over 64 KiB of log-like lines (once with no secret in it, the common case,
once with each secret printed in a few forms), and `safe_end` at a cut. The floor is the
cheapest redaction there is, one `str.replace` per raw value, which finds none of the
encoded forms: the ratio says what covering them costs.
"""
from __future__ import annotations

import argparse
import base64
import random
import string
import time
import urllib.parse
from typing import Any

from bench.harness import machine, median, print_machine, print_table, write_result
from services.secrets.redaction import Redactor

NAME = "redaction"
HELP = "Redactor.text over a 64 KiB output with 10 secrets in every form, against str.replace of the raw values"
TARGET = 10.0    # redaction time / floor we aim to stay under


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kib", type=int, default=64, help="output size in KiB (default 64)")
    parser.add_argument("--secrets", type=int, default=10, help="secrets held by the attempt (default 10)")
    parser.add_argument("--repetitions", type=int, default=50, help="timed passes; the median counts (default 50)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def workload(kib: int, count: int) -> tuple[list[str], str, str]:
    rng = random.Random(14)
    alphabet = string.ascii_letters + string.digits + "-_/+=!@ "
    secrets = ["".join(rng.choice(alphabet) for _ in range(rng.randint(16, 48))) for _ in range(count)]
    lines, size = [], 0
    while size < kib * 1024:
        line = f"{time.strftime('%H:%M:%S')} node-{rng.randint(1, 99)} deployed checkout {rng.random():.6f} ok"
        lines.append(line)
        size += len(line) + 1
    clean = "\n".join(lines)[:kib * 1024]
    forms = [f(s) for s in secrets for f in (lambda s: s, lambda s: s[::-1], lambda s: s.encode().hex(),
                                             lambda s: base64.b64encode(b"x" + s.encode()).decode(),
                                             lambda s: urllib.parse.quote(s, safe=""))]
    step = len(clean) // (len(forms) + 1)
    dirty = "".join(clean[i * step:(i + 1) * step] + forms[i] for i in range(len(forms))) + clean[len(forms) * step:]
    return secrets, clean, dirty[:kib * 1024 + 4096]


def timed(work: Any, repetitions: int) -> float:
    samples = []
    for _ in range(repetitions):
        began = time.perf_counter()
        work()
        samples.append(time.perf_counter() - began)
    return median(samples)


def floor(secrets: list[str], text: str) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def measure(kib: int, count: int, repetitions: int) -> dict[str, Any]:
    secrets, clean, dirty = workload(kib, count)
    built = time.perf_counter()
    redactor = Redactor(secrets)
    build_ms = (time.perf_counter() - built) * 1000
    assert not any(s in redactor.text(dirty) for s in secrets)
    figures = {}
    for label, text in (("clean", clean), ("with secrets", dirty)):
        figures[label] = {"redact_ms": timed(lambda text=text: redactor.text(text), repetitions) * 1000,
                          "floor_ms": timed(lambda text=text: floor(secrets, text), repetitions) * 1000}
        figures[label]["ratio"] = figures[label]["redact_ms"] / figures[label]["floor_ms"]
    cut_ms = timed(lambda: redactor.safe_end(dirty[:kib * 512]), repetitions) * 1000
    return {"benchmark": NAME, "kib": kib, "secrets": count, "forms": len(redactor.forms),
            "repetitions": repetitions, "machine": machine(), "build_ms": build_ms, "safe_end_ms": cut_ms,
            "workloads": figures, "target_ratio": TARGET,
            "ratios": {label: f["ratio"] for label, f in figures.items()}}


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    print(f"{result['kib']} KiB of output, {result['secrets']} secrets ({result['forms']} forms), "
          f"median of {result['repetitions']}; redactor built in {result['build_ms']:.2f} ms, "
          f"a cut checked in {result['safe_end_ms']:.3f} ms")
    print()
    print_table(["output", "redact ms", "floor ms", "ratio"],
                [(label, f["redact_ms"], f["floor_ms"], f"{f['ratio']:.1f}x")
                 for label, f in result["workloads"].items()])
    print()
    print("ratios: " + ", ".join(f"{label} {ratio:.1f}x floor" for label, ratio in result["ratios"].items())
          + f" (target <= {result['target_ratio']:g}x)")


async def run(args: argparse.Namespace) -> int:
    if args.kib < 1 or args.secrets < 1 or args.repetitions < 1:
        raise SystemExit("--kib, --secrets and --repetitions must be at least 1")
    result = measure(args.kib, args.secrets, args.repetitions)
    report(result)
    print(f"result: {write_result(NAME, result, args.json)}")
    return 0
