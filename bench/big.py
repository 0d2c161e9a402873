"""big: `playbook validate` of 1,000 to 100,000 steps as users run it, against loading the same YAML.

A playbook of N steps in the mix operators write (`playbook_text`) is validated by the CLI,
as a process: wall time and peak RSS. The floor is a process that only loads the same text
with PyYAML's libyaml loader (`yaml.load(text, CSafeLoader)`), in the same run. In-process,
one more validation is split into the language side (YAML, schema, plan, references,
parameters) and the shell and credential analysis (`security_issues`), whose share is
reported apart: it is another module's cost.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, machine, print_machine, print_table, python_env, write_result

NAME = "big"
HELP = "whole-process `playbook validate` of 1k/10k/100k-step playbooks: time and peak RSS, against a YAML load"
TARGETS = {10_000: (1.0, 150 * 2**20), 100_000: (10.0, None)}  # steps -> (seconds, peak RSS bytes)
FLOOR_SCRIPT = "import sys, yaml; yaml.load(open(sys.argv[1]).read(), Loader=yaml.CSafeLoader)"

GROUP_EVERY, GROUP_SIZE = 20, 5  # in each block of 20 steps, 5 run as one parallel group


def playbook_text(steps: int, seed: int = 0, *, shell: bool = True) -> str:
    """A valid playbook of `steps` steps in the mix operators write, as YAML text.

    Shell, http and noop steps; parallel groups; depends_on lists that reach far back;
    `when` conditions, validators, retries; `${steps.<id>...}` references to steps near
    and far upstream. Same `steps` and `seed`, same text. Without `shell`, the shell steps
    are noop steps (the shell analysis is left out of what is measured).
    """
    rng = random.Random(seed)
    lines = [
        "name: bench-big",
        "description: a generated playbook of many steps",
        "parameters:",
        "  - {name: base_url, type: url, allowed_hosts: [127.0.0.1], default: 'http://127.0.0.1:8080'}",
        "  - {name: service, default: checkout}",
        "  - {name: replicas, type: integer, default: 2}",
        "variables:",
        "  service_url: ${base_url}/services/${service}",
        "steps:",
    ]
    ids: list[str] = []
    unit: list[str] = []  # ids of the unit before the current one (one step, or a whole group)
    start = 0  # index of the current unit's first step: every step before it is upstream of it
    for i in range(steps):
        in_group = GROUP_EVERY - GROUP_SIZE <= i % GROUP_EVERY
        first_in_group = i % GROUP_EVERY == GROUP_EVERY - GROUP_SIZE
        if not in_group or first_in_group:
            unit = ids[start:i]
            start = i
        kind = ("shell", "shell", "shell", "shell", "shell", "shell", "http", "http", "http", "noop")[i % 10]
        kind = kind if shell or kind != "shell" else "noop"
        step_id = f"{kind}_{i}"
        ids.append(step_id)
        lines += [f"  - id: {step_id}", f"    name: {kind} step number {i}", f"    action: "
                  f"{'http_request' if kind == 'http' else kind}"]
        earlier = _earlier(rng, ids, start)
        if kind == "shell":
            use = f" --from ${{steps.{earlier}.{_output(earlier, 'stdout')}}}" if earlier and rng.random() < 0.4 else ""
            lines += ["    args:", f"      command: echo deploy ${{service}} part {i}{use} && sleep 0",
                      "    timeout_seconds: 30"]
        elif kind == "http":
            lines += ["    args:", f"      url: ${{service_url}}/items/{i}", "      method: GET",
                      "    timeout_seconds: 10"]
        else:
            lines.append("    args: {message: ok}")
        if in_group:
            lines.append(f"    parallel_group: wave_{i // GROUP_EVERY}")
        elif unit and i % 8 == 3:
            extra = [ids[rng.randrange(start)]] if start else []
            lines.append(f"    depends_on: [{', '.join(dict.fromkeys(unit + extra))}]")
        if earlier and i % 7 == 2:
            lines.append(f"    when: ${{steps.{earlier}.{_output(earlier, 'ok')}}}")
        elif earlier and i % 7 == 5:
            left = f"${{steps.{earlier}.{_output(earlier, 'status_code')}}}"
            lines += ["    when:", "      type: equals", f"      left: {left}", "      right: 200"]
        if i % 9 == 4:
            lines += ["    validators:", "      - {type: port_open, port: 8080}",
                      "      - {type: http_status, url: '${service_url}/health'}"]
        if i % 11 == 6:
            lines += ["    retry: {max_attempts: 3, base_delay: 0.5}"]
    return "\n".join(lines) + "\n"


_OUTPUTS = {"shell": {"stdout": "stdout", "ok": "returncode", "status_code": "returncode"},
            "http": {"stdout": "body", "ok": "status_code", "status_code": "status_code"},
            "noop": {"stdout": "message", "ok": "message", "status_code": "message"}}


def _output(step_id: str, wanted: str) -> str:
    """An output of that kind of step playing the part of `wanted` (validation refuses one it never has)."""
    return _OUTPUTS[step_id.split("_")[0]][wanted]


def _earlier(rng: random.Random, ids: list[str], start: int) -> str | None:
    """A step sure to have run before the current unit: mostly a near one, sometimes one far back."""
    if not start:
        return None
    low = 0 if rng.random() < 0.2 else max(0, start - 20)
    return ids[rng.randrange(low, start)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", default="1000,10000,100000",
                        help="comma-separated sizes (default 1000,10000,100000)")
    parser.add_argument("--repetitions", type=int, default=3,
                        help="processes per size and per floor; the median counts")
    parser.add_argument("--profile", action="store_true", help="cProfile one in-process validation of the largest "
                        "size up to 10,000 steps and print where the time goes")
    parser.add_argument("--json", metavar="PATH", help=f"where to write the result (default bench/results/{NAME}.json)")


def timed_process(argv: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS bytes and exit code of one process."""
    began = time.perf_counter()
    process = subprocess.Popen(argv, cwd=ROOT, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    process.stderr.close()  # type: ignore[union-attr]
    return wall, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status)


def split_in_process(text: str) -> dict[str, float]:
    """Seconds of one validation, and of the shell and credential analysis alone on the same data."""
    from services.playbook import validate_playbook
    from services.playbook.security import security_issues
    from services.playbook.yaml_source import load_yaml
    began = time.process_time()
    diagnostics = validate_playbook(text, "big.yaml")
    total = time.process_time() - began
    data = load_yaml(text).data
    began = time.process_time()
    security_issues(data)
    security = time.process_time() - began
    if diagnostics:
        raise RuntimeError(f"the generated playbook is not valid: {diagnostics[0]}")
    return {"validate_cpu_s": total, "security_cpu_s": security, "language_cpu_s": total - security}


def measure_size(steps: int, repetitions: int, folder: Path) -> dict[str, Any]:
    text = playbook_text(steps)
    path = folder / f"big-{steps}.yaml"
    path.write_text(text)
    runs, floors = [], []
    for _ in range(repetitions):  # interleaved, so drift hits the floor and the workload alike
        floors.append(timed_process([sys.executable, "-c", FLOOR_SCRIPT, str(path)]))
        runs.append(timed_process([sys.executable, "-m", "ui.cli.main", "validate", str(path)]))
    if any(code != 0 for _, _, code in runs + floors):
        raise RuntimeError(f"a process failed at {steps} steps: {[code for _, _, code in runs + floors]}")
    wall, floor = statistics.median(r[0] for r in runs), statistics.median(f[0] for f in floors)
    peak = max(r[1] for r in runs)
    target_s, target_rss = TARGETS.get(steps, (None, None))
    return {
        "steps": steps, "text_bytes": len(text.encode()), "validate_s": wall, "validate_runs_s": [r[0] for r in runs],
        "peak_rss_bytes": peak, "floor_s": floor, "floor_peak_rss_bytes": max(f[1] for f in floors),
        "ratio": wall / floor, "target_s": target_s, "target_peak_rss_bytes": target_rss,
        **split_in_process(text),
    }


def profile(steps: int) -> list[dict[str, Any]]:
    """The top costs (own time) of one in-process validation."""
    from services.playbook import validate_playbook
    text = playbook_text(steps)
    profiler = cProfile.Profile()
    profiler.runcall(validate_playbook, text, "big.yaml")
    stats = pstats.Stats(profiler, stream=io.StringIO())
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:15]  # type: ignore[attr-defined]
    return [{"function": f"{Path(file).name}:{line}({name})", "calls": calls, "own_s": own, "cumulative_s": cum}
            for (file, line, name), (_, calls, own, cum, _) in rows]


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    print(f"repetitions: {result['repetitions']} processes per size (median); floor: a process that only "
          "loads the same text with yaml.CSafeLoader")
    print()
    rows = [(f"{r['steps']:,}", f"{r['text_bytes'] / 2**20:.1f}", r["validate_s"], r["floor_s"], f"{r['ratio']:.1f}x",
             f"{r['peak_rss_bytes'] / 2**20:.0f}", f"{r['peak_rss_bytes'] / r['steps']:.0f}", r["language_cpu_s"],
             r["security_cpu_s"], f"{r['security_cpu_s'] / r['validate_cpu_s']:.0%}")
            for r in result["sizes"]]
    print_table(["steps", "MiB", "validate s", "floor s", "ratio", "peak MB", "B/step", "language s", "shell+cred s",
                 "shell share"], rows)
    if result.get("profile"):
        print()
        print_table(["top own time", "calls", "own s", "cum s"],
                    [(p["function"], p["calls"], p["own_s"], p["cumulative_s"]) for p in result["profile"]])
    print()
    parts = []
    for r in result["sizes"]:
        if r["target_s"] is None:
            continue
        verdict = "met" if r["validate_s"] <= r["target_s"] else "missed"
        memory = (f", {r['peak_rss_bytes'] / 2**20:.0f} MB (target <= {r['target_peak_rss_bytes'] / 2**20:.0f})"
                  if r["target_peak_rss_bytes"] else "")
        parts.append(f"{r['steps']:,} steps {r['validate_s']:.2f} s = {r['ratio']:.1f}x floor "
                     f"(target <= {r['target_s']:g} s: {verdict}){memory}, language side {r['language_cpu_s']:.2f} s")
    print("ratios: " + "; ".join(parts or [f"{r['steps']:,} steps {r['ratio']:.1f}x floor" for r in result["sizes"]]))
    if len(result["sizes"]) > 1:
        first, last = result["sizes"][0], result["sizes"][-1]
        growth = (last["peak_rss_bytes"] - first["peak_rss_bytes"]) / (last["steps"] - first["steps"])
        print(f"memory: {growth / 1024:.1f} KiB more peak RSS per step from {first['steps']:,} to {last['steps']:,}")


async def run(args: argparse.Namespace) -> int:
    sizes = [int(size) for size in args.steps.split(",")]
    if args.repetitions < 1 or any(size < 1 for size in sizes):
        raise SystemExit("--steps and --repetitions must be at least 1")
    with tempfile.TemporaryDirectory(prefix="pb-bench-big-") as folder:
        measured = [measure_size(size, args.repetitions, Path(folder)) for size in sizes]
    result = {"benchmark": NAME, "machine": machine(), "repetitions": args.repetitions, "sizes": measured,
              "ratios": {str(r["steps"]): r["ratio"] for r in measured}}
    if args.profile:
        result["profile"] = profile(max([s for s in sizes if s <= 10_000] or [min(sizes)]))
    report(result)
    print(f"result: {write_result(NAME, result, args.json)}")
    return 0
