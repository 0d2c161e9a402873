"""vs-ansible: the same N-step playbook of `true` in ansible-core and in ours, in the same run.

Ansible: `ansible-playbook` on localhost (`connection: local`, `gather_facts: false`,
pipelining on), a `command: true` task N times; a whole process, as a user runs it.
Ours as a whole process: `playbook up` started fresh (empty PLAYBOOK_HOME, its own
nats-server on a free port) and `playbook run file.yaml` to the end, both in the time.
Ours warm: StartRun to RunCompleted against that engine once it runs, as `steps` does;
and, for information, `playbook run` as a process against it. ansible-core is installed
into bench/results/.ansible-venv when `ansible-playbook` is not on PATH.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import nats

from bench import steps as steps_bench
from bench.harness import (
    RESULTS_DIR, ROOT, RunEnds, admin_token, finish, machine, median, print_machine, print_table, python_env,
)
from events.commands import StartRun
from services.embedded import free_port
from services.identity.credentials import nats_login
from ui.client import EngineClient

NAME = "vs-ansible"
HELP = "the same N-step playbook of `true` in ansible-core and in ours: whole processes, and ours warm"
TARGETS = {"whole_process": 50.0, "warm": 100.0}   # ansible's time / ours, at least
ANSIBLE_VENV = RESULTS_DIR / ".ansible-venv"
UP_TIMEOUT = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=100, help="steps (tasks) in the playbook (default 100)")
    parser.add_argument("--repetitions", type=int, default=3, help="measured runs of each; the median counts")
    parser.add_argument("--skip-ansible", action="store_true", help="time only ours (no ansible, nothing installed)")
    parser.add_argument("--json", metavar="PATH",
                        help="where to write the result (default bench/results/vs-ansible.json)")


# -- ansible -----------------------------------------------------------------------------

def ansible_playbook_binary() -> str:
    """`ansible-playbook` from PATH, else from the benchmark's own virtualenv (made on first use)."""
    if found := shutil.which("ansible-playbook"):
        return found
    binary = ANSIBLE_VENV / "bin" / "ansible-playbook"
    if not binary.exists():
        print(f"installing ansible-core into {ANSIBLE_VENV} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(ANSIBLE_VENV)], check=True)
        subprocess.run([str(ANSIBLE_VENV / "bin" / "pip"), "install", "--quiet", "ansible-core"], check=True)
    return str(binary)


def ansible_yaml(tasks: int) -> str:
    lines = ["- hosts: localhost", "  connection: local", "  gather_facts: false", "  vars:",
             '    ansible_python_interpreter: "{{ ansible_playbook_python }}"', "  tasks:"]
    for i in range(tasks):
        lines += [f"    - name: t{i:04d}", '      command: "true"']
    return "\n".join(lines) + "\n"


def ansible_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, env=ansible_env(None))
    return done.stdout.splitlines()[0].strip() if done.stdout else f"unknown ({done.stderr.strip()[:200]})"


def ansible_env(home: Path | None) -> dict[str, str]:
    env = {**os.environ, "LC_ALL": "C.UTF-8", "ANSIBLE_PIPELINING": "True", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_RETRY_FILES_ENABLED": "False", "ANSIBLE_LOCALHOST_WARNING": "False",
           "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False"}
    if home is not None:
        env["ANSIBLE_HOME"] = str(home)
    return env


def time_ansible(binary: str, playbook: Path, home: Path) -> float:
    began = time.perf_counter()
    done = subprocess.run([binary, "-i", "localhost,", str(playbook)], capture_output=True, text=True,
                          env=ansible_env(home), cwd=playbook.parent)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return wall


# -- ours --------------------------------------------------------------------------------

class Up:
    """`playbook up` in a process group of its own; knows when it says "engine ready"."""

    def __init__(self, home: Path) -> None:
        self.env = python_env(PLAYBOOK_HOME=str(home), PLAYBOOK_NATS_PORT=str(free_port()), PLAYBOOK_LOG="INFO",
                              PLAYBOOK_USER="bench")
        self.env.pop("NATS_URL", None)
        # Bytecode cached as an installed package has it (pip compiles ansible's at install).
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)
        self.home = home
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.process = subprocess.Popen([sys.executable, "-m", "ui.cli.main", "up", "--http-port", "0"],
                                        cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.append(line)
            if "engine ready" in line:
                self.ready.set()
        self.ready.set()   # exited: whoever waits finds out below

    def wait_ready(self) -> None:
        if not self.ready.wait(UP_TIMEOUT) or self.process.poll() is not None:
            raise RuntimeError(f"`playbook up` did not become ready (exit {self.process.poll()}): "
                               + "".join(self.lines[-20:]))

    @property
    def url(self) -> str:
        return (self.home / "nats.url").read_text().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def playbook_run(env: dict[str, str], playbook: Path) -> float:
    """`playbook run file.yaml` as a process, to the run's end."""
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ui.cli.main", "run", str(playbook)], cwd=ROOT, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"playbook run exited {done.returncode}: {done.stderr[-2000:]}")
    return wall


async def in_process_run(url: str, home: Path, text: str, steps: int) -> float:
    """StartRun to RunCompleted from this process against the running engine, as `steps` measures: with the local
    admin's token `up` made, and the engine's login (run ends are heard as plain subscriptions)."""
    login = nats_login("engine", home)
    nc = await nats.connect(url, name="bench-client", **(login.connect_options() if login else {}))
    try:
        client = EngineClient(nc, admin_token(home))
        ends = await RunEnds(nc).start()
        walls = []
        for _ in range(2):   # the first warms this connection and the engine's caches for the playbook
            run_id = f"vs-ansible-{uuid.uuid4().hex[:12]}"
            began = time.perf_counter()
            reply = await client.send(StartRun(playbook=text, run_id=run_id), timeout=60)
            if not reply.accepted:
                raise RuntimeError(f"StartRun rejected: {reply.error.message if reply.error else reply}")
            await ends.wait([run_id], 60 + steps)
            kind, ended = ends.ended[run_id]
            if kind != "RunCompleted":
                raise RuntimeError(f"run {run_id} ended with {kind}")
            walls.append(ended - began)
        await ends.stop()
        return walls[-1]
    finally:
        await nc.close()


async def ours(workdir: Path, playbook: Path, steps: int, cycle: int) -> dict[str, float]:
    """A fresh engine and a run to its end, timed together; then warm runs against that engine."""
    up = None
    began = time.perf_counter()
    try:
        up = Up(workdir / f"home-{cycle}")
        up.wait_ready()
        ready = time.perf_counter() - began
        run_s = playbook_run(up.env, playbook)
        whole = time.perf_counter() - began
        warm_cli = playbook_run(up.env, playbook)
        warm = await in_process_run(up.url, up.home, playbook.read_text(), steps)
    finally:
        if up is not None:
            up.stop()
    return {"whole_process_s": whole, "up_ready_s": ready, "first_run_cli_s": run_s, "warm_cli_s": warm_cli,
            "warm_s": warm}


# -- the benchmark -----------------------------------------------------------------------

async def measure(steps: int, repetitions: int, skip_ansible: bool) -> dict[str, Any]:
    binary = None if skip_ansible else ansible_playbook_binary()
    with tempfile.TemporaryDirectory(prefix="pb-bench-vs-ansible-") as tmp:
        workdir = Path(tmp)
        ours_file = workdir / "bench-true.yaml"
        ours_file.write_text(steps_bench.playbook("shell", steps))
        ansible_file = workdir / "ansible-true.yml"
        ansible_file.write_text(ansible_yaml(steps))
        warmup_file = workdir / "ansible-warmup.yml"
        warmup_file.write_text(ansible_yaml(1))
        ansible_home = workdir / "ansible-home"

        if binary:
            time_ansible(binary, warmup_file, ansible_home)   # warm-up: page cache, ANSIBLE_HOME
        await ours(workdir, ours_file, steps, 0)              # warm-up: page cache, bytecode
        cycles, ansible_s = [], []
        for i in range(1, repetitions + 1):
            if binary:
                ansible_s.append(time_ansible(binary, ansible_file, ansible_home))
            cycles.append(await ours(workdir, ours_file, steps, i))

    figures = {key: median([c[key] for c in cycles]) for key in cycles[0]}
    best = {key: min(c[key] for c in cycles) for key in cycles[0]}
    ansible = median(ansible_s) if ansible_s else None
    ansible_best = min(ansible_s) if ansible_s else None

    def ratios_of(reference: float | None, ours_: dict[str, float]) -> dict[str, float | None]:
        return {kind: reference / ours_[f"{kind}_s"] if reference else None
                for kind in ("whole_process", "warm", "warm_cli")}

    ratios = ratios_of(ansible, figures)
    return {
        "benchmark": NAME,
        "steps": steps,
        "repetitions": repetitions,
        "machine": {**machine(), "ansible": ansible_version(binary) if binary else None},
        "ansible_skipped": skip_ansible,
        "ansible_s": ansible_s,
        "ansible_median_s": ansible,
        "ansible_best_s": ansible_best,
        "ours": {**figures, "best": best, "cycles": cycles},
        "targets": TARGETS,
        "ratios": ratios,
        "ratios_best_of": ratios_of(ansible_best, best),
    }


def report(result: dict[str, Any]) -> None:
    print_machine(result["machine"])
    ours_, ansible, ratios = result["ours"], result["ansible_median_s"], result["ratios"]
    best, ansible_best, ratios_best = ours_["best"], result["ansible_best_s"], result["ratios_best_of"]
    print(f"{result['steps']} steps of `true`, {result['repetitions']} repetitions (median); "
          f"ansible: {result['machine']['ansible'] or 'skipped'}")
    print()

    def ratio(key: str) -> str:
        return "" if ratios[key] is None else f"{ratios[key]:.1f}x"

    def ratio_best(key: str) -> str:
        return "" if ratios_best[key] is None else f"{ratios_best[key]:.1f}x"

    rows = [("ansible-playbook (whole process)", "" if ansible is None else ansible,
             "" if ansible_best is None else ansible_best, "", "", ""),
            ("ours, whole process: fresh `playbook up` + `playbook run`", ours_["whole_process_s"],
             best["whole_process_s"], f"up ready {ours_['up_ready_s']:.2f} s + run {ours_['first_run_cli_s']:.2f} s",
             ratio("whole_process"), ratio_best("whole_process")),
            ("ours, warm: StartRun -> RunCompleted", ours_["warm_s"], best["warm_s"], "engine already running",
             ratio("warm"), ratio_best("warm")),
            ("ours, warm: `playbook run` process (info)", ours_["warm_cli_s"], best["warm_cli_s"],
             "engine already running", ratio("warm_cli"), ratio_best("warm_cli"))]
    print_table(["workload", "median s", "best s", "of which (median)", "ansible / ours", "best / best"], rows)
    print()
    if ansible is None:
        print(f"ratios: ansible skipped; ours {ours_['whole_process_s']:.2f} s as whole processes, "
              f"{ours_['warm_s']:.3f} s warm")
    else:
        print(f"ratios: ours {ratios['whole_process']:.1f}x faster than ansible as whole processes "
              f"(target >= {result['targets']['whole_process']:g}x), {ratios['warm']:.1f}x warm "
              f"(target >= {result['targets']['warm']:g}x); best of {result['repetitions']}: "
              f"{ratios_best['whole_process']:.1f}x and {ratios_best['warm']:.1f}x")


async def run(args: argparse.Namespace) -> int:
    if args.steps < 1 or args.repetitions < 1:
        raise SystemExit("--steps and --repetitions must be at least 1")
    result = await measure(args.steps, args.repetitions, args.skip_ansible)
    return finish(NAME, result, args.json, report)
