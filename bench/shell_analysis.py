"""shell-analysis: what the PB4xx shell checks cost per command, against `shlex.split` of the same commands.

Commands are the analysis corpus (tests/unit/shell_corpus.yaml), each made distinct by a
comment so nothing is analysed twice. CPU time (not wall time: the machine may be shared),
best of the repetitions. Figures: the full analysis, the analysis as validation runs it
(with its screen), and `security_issues` over a whole playbook of N steps (which also
scans every value for credentials); plus the cost per command at N/10 against N, which
stays near 1 when the analysis is linear.
"""
from __future__ import annotations

import argparse
import random
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.harness import machine, print_machine, print_table, write_result
from services.playbook.security import security_issues
from services.playbook.shell.check import check_command

NAME = "shell-analysis"
HELP = "microseconds per shell command of the PB4xx analysis, against shlex.split of the same commands"
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "unit" / "shell_corpus.yaml"
RISKS: dict[str, Any] = {"dir": "empty", "target": "set", "who": "set"}
VARIABLES = {"workdir": "/tmp/work"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=10_000, help="shell steps in the playbook (default 10000)")
    parser.add_argument("--repetitions", type=int, default=5, help="measured passes; the best counts (default 5)")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def commands(kind: str, n: int) -> list[str]:
    corpus = yaml.safe_load(CORPUS.read_text())
    pool = {"harmless": corpus["harmless"], "destructive": [entry["command"] for entry in corpus["destructive"]]}
    chosen = pool[kind] if kind in pool else pool["harmless"] + pool["destructive"]
    rng = random.Random(7)
    return [f"{rng.choice(chosen)}\n# step {i}" for i in range(n)]


def per_item_us(work: Callable[[Any], Any], items: list[Any], repetitions: int) -> float:
    best = float("inf")
    for _ in range(repetitions):
        start = time.process_time()
        for item in items:
            work(item)
        best = min(best, time.process_time() - start)
    return best / len(items) * 1e6


def split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unclosed quote: shlex gives up where the analysis goes on
        return []


def playbook(texts: list[str]) -> dict[str, Any]:
    return {"name": "bench", "parameters": [{"name": "dir"}, {"name": "target", "default": "/srv/x"}],
            "variables": VARIABLES,
            "steps": [{"id": f"s{i}", "action": "shell", "args": {"command": text}} for i, text in enumerate(texts)]}


async def run(args: argparse.Namespace) -> int:
    info = machine()
    print_machine(info)
    workloads: dict[str, dict[str, float]] = {}
    for kind in ("harmless", "destructive", "mixed"):
        texts = commands(kind, args.steps)
        floor = per_item_us(split, texts, args.repetitions)
        full = per_item_us(lambda c: check_command(c, VARIABLES, RISKS, screen=False), texts, args.repetitions)
        screened = per_item_us(lambda c: check_command(c, VARIABLES, RISKS), texts, args.repetitions)
        few = texts[:max(1, args.steps // 10)]
        small = per_item_us(lambda c: check_command(c, VARIABLES, RISKS, screen=False), few, args.repetitions)
        whole = per_item_us(lambda data: security_issues(data), [playbook(texts)], max(1, args.repetitions // 2))
        workloads[kind] = {"floor_us": floor, "full_us": full, "screened_us": screened,
                           "playbook_us_per_step": whole / len(texts), "ratio": full / floor,
                           "linearity": full / small}
    print_table(["commands", "shlex.split us", "analysis us", "x floor", "as validated us", "playbook us/step",
                 "N vs N/10"],
                [[kind, w["floor_us"], w["full_us"], w["ratio"], w["screened_us"], w["playbook_us_per_step"],
                  w["linearity"]] for kind, w in workloads.items()])
    ratios = {kind: round(w["ratio"], 2) for kind, w in workloads.items()}
    print("ratios: " + ", ".join(f"{kind} {ratio}x shlex.split" for kind, ratio in ratios.items()))
    result = {"benchmark": NAME, "steps": args.steps, "machine": info, "workloads": workloads, "ratios": ratios}
    print(f"result: {write_result(NAME, result, args.json)}")
    return 0
