"""A service `playbook up` runs in a process of its own: started beside the engine with its settings,
started again if it dies, stopped with `up`.

The learning service runs so. It records what it learns through eventsourcing on a thread; inside
the engine's process, that thread's turns with the GIL held up every step (a run of 10,000 steps:
~250 steps/s beside it, ~290 with it in a process of its own, where it uses the other core).

`python -m app.service_process NAME [--json]` is the child: one service, its logs as `up`'s.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping

from services.embedded import die_with_parent
from services.executor.processes import protect_engine
from services.settings import Settings

log = logging.getLogger("playbook")

RESTART_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)   # pauses before starting a service that died, again and again
STEADY_SECONDS = 60.0        # a process that lived this long died once: its next restart is quick again
READY = b"ready\n"           # what the child says on its stdout once it serves
NOT_HANDED_ON = "PLAYBOOK_SECRET"   # PLAYBOOK_SECRET_<NAME>, PLAYBOOK_SECRETS_FILE: the executor's alone
STOP_GRACE = 10.0            # seconds a stopping service may take (the learning service writes what it read)


def child_environment(settings: Settings) -> dict[str, str]:
    """The edge's environment with what `up` decided itself (the NATS it started, the replicas and lease of a
    cluster: a child with fewer replicas would bring the streams' configuration down to them), without what
    no service but the executor needs: the steps' secrets and the CLI's token."""
    kept = {name: value for name, value in settings.environ.items()
            if not name.startswith(NOT_HANDED_ON) and name != "PLAYBOOK_TOKEN"}
    return {**kept, "PLAYBOOK_HOME": str(settings.home), "NATS_URL": settings.engine_url(),
            "PLAYBOOK_STREAM_REPLICAS": str(settings.stream_replicas),
            "PLAYBOOK_LEASE_SECONDS": str(settings.lease_seconds)}


class ServiceProcess:
    """One service in a child process, kept running until `stop`."""

    def __init__(self, name: str, environ: Mapping[str, str], *, as_json: bool = False) -> None:
        self.name, self.environ = name, dict(environ)
        self.argv = [sys.executable, "-m", "app.service_process", name, *(["--json"] if as_json else [])]
        self.process: asyncio.subprocess.Process | None = None
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()
        self._ended = asyncio.Event()     # a process ended without saying it serves (it failed to start)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_running(), name=f"{self.name} process")

    async def ready(self, timeout: float) -> bool:
        """Whether the service said it serves (on its stdout) within `timeout` seconds; False as soon as one of its
        processes ended without saying so (it could not start: it is started again, and `up` goes on)."""
        waits = [asyncio.ensure_future(event.wait()) for event in (self._ready, self._ended)]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return self._ready.is_set()

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL if it has not stopped within `grace` seconds."""
        self._stopping.set()
        self._signal(signal.SIGTERM)
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            log.warning("the %s service did not stop within %.0f s; killed", self.name, grace)
            self._signal(signal.SIGKILL)
            await self._task

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(sig)

    async def _keep_running(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                # A session of its own: Ctrl-C stops `up`, which stops this; it dies with `up` even if `up` is killed.
                self.process = await asyncio.create_subprocess_exec(
                    *self.argv, env=self.environ, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    start_new_session=True, preexec_fn=die_with_parent)
                if self._stopping.is_set():      # `stop` came while it started
                    self._signal(signal.SIGTERM)
                await self._read_output(self.process)
                code = await self.process.wait()
            except OSError as err:
                code = None
                log.error("cannot start the %s service: %s", self.name, err)
            if not self._ready.is_set():
                self._ended.set()
            self._ready.clear()
            if self._stopping.is_set():
                return
            if time.monotonic() - began > STEADY_SECONDS:
                failures = 0
            pause = RESTART_SECONDS[min(failures, len(RESTART_SECONDS) - 1)]
            failures += 1
            how = "not started" if code is None else f"code {code}"
            log.warning("the %s service exited (%s); starting it again in %.0f s", self.name, how, pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)

    async def _read_output(self, process: asyncio.subprocess.Process) -> None:
        """Until the child closes its stdout (it exits): READY there says it serves; anything else is passed on."""
        assert process.stdout is not None
        while True:
            try:
                line = await process.stdout.readline()
            except ValueError:   # a line past the reader's limit (64 KiB), dropped: reading goes on
                log.warning("the %s service wrote an over-long line on its stdout; dropped", self.name)
                continue
            if not line:
                return
            if line == READY:
                self._ready.set()
            else:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    from app.root import SERVICES, configure_logging, run_engine, serve
    parser = argparse.ArgumentParser(prog="python -m app.service_process", description=__doc__)
    parser.add_argument("service", choices=sorted(SERVICES))
    parser.add_argument("--json", action="store_true", help="log one JSON object a line, as `playbook up --json`")
    args = parser.parse_args(argv)
    protect_engine()   # undumpable: a step running as `up`'s user cannot read this process's environment
    settings = Settings.from_environ(os.environ)
    configure_logging(settings, args.json)
    run_engine(serve(settings, [args.service], ready=_say_ready))


async def _say_ready(_running: object) -> None:
    sys.stdout.buffer.write(READY)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
