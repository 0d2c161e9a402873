"""`GET /metrics`: the projector's views in Prometheus text format, read at scrape time.

A custom collector turns the Metrics fold and the projector's progress into metric
families on each scrape, so nothing is counted twice and nothing lives in the global
registry: every app has its own registry (tests run several apps in one process).
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterator

from aiohttp import web
from nats.aio.client import Client as NATS
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric, SummaryMetricFamily,
)
from prometheus_client.utils import floatToGoString

from events import subjects
from events.identity import Caller
from events.insights import LearningStatus
from projections.metrics import DURATION_BUCKETS_MS, Metrics
from projections.projector import Projector
from services.read import RUN_STATUSES, Worker, workers
from services.errors import EngineUnavailable, PlaybookError
from services.identity.authority import Resource
from ui.insights import LearningClient
from ui.web import bounded_labels
from ui.web.access import CALLER, permit
from ui.web.backend import BACKEND, Backend

CIRCUIT_STATES = ("closed", "open", "half_open")
STREAM_INFO_TIMEOUT = 2.0
BUCKET_BOUNDS = [floatToGoString(ms / 1000) for ms in DURATION_BUCKETS_MS]  # type: ignore[no-untyped-call]  # seconds


class ViewsCollector:
    """The projector's views as metric families, computed when the registry is collected."""

    def __init__(self, projector: Projector) -> None:
        self.projector = projector
        # The stream's last sequence and the learning service's status, fetched (async) by the handler just
        # before it collects.
        self.stream_last_seq: int | None = None
        self.learning: LearningStatus | None = None
        self.learning_down = False      # asked, and no learning service answered
        self.workers: dict[str, Worker] = {}

    def collect(self) -> Iterator[Metric]:
        metrics = self.projector.settled_metrics
        yield from runs(metrics)
        yield from steps(metrics)
        yield from gates_and_circuits(metrics)
        yield from self._projector()
        yield from self._learning()
        yield from self._workers()

    def _projector(self) -> Iterator[Metric]:
        projector = self.projector
        yield CounterMetricFamily("playbook_projector_events_applied", "Events the projector applied since it "
                                  "started or was rebuilt", value=projector.applied)
        yield GaugeMetricFamily("playbook_projector_position", "Stream sequence the views have reached",
                                value=projector.position)
        yield GaugeMetricFamily("playbook_projector_caught_up", "1 once the projector has read the stored backlog",
                                value=int(projector.caught_up))
        if self.stream_last_seq is not None:
            yield GaugeMetricFamily("playbook_stream_last_sequence", "Last sequence stored in the runs stream",
                                    value=self.stream_last_seq)
            yield GaugeMetricFamily("playbook_projector_lag_events", "Events stored but not yet in the views",
                                    value=max(0, self.stream_last_seq - projector.position))


    def _workers(self) -> Iterator[Metric]:
        if not self.workers:      # the stream could not be asked: left out, not guessed
            return
        up = GaugeMetricFamily("playbook_service_up", "1 while some replica of the service takes its work, 0 while "
                               "none does (its work waits)", labels=["service"])
        backlog = GaugeMetricFamily("playbook_service_backlog_events", "Events waiting for the service: not yet "
                                    "delivered, or delivered and not yet done", labels=["service"])
        for service, worker in sorted(self.workers.items()):
            up.add_metric([service], int(worker.up))
            if worker.backlog is not None:
                backlog.add_metric([service], worker.backlog)
        yield up
        yield backlog

    def _learning(self) -> Iterator[Metric]:
        if self.learning is not None or self.learning_down:
            yield GaugeMetricFamily("playbook_learning_up", "1 when the learning service answered this scrape, 0 "
                                    "when it did not", value=int(self.learning is not None))
        if (status := self.learning) is None:     # not running, or this scraper may not ask it: left out
            return
        yield GaugeMetricFamily("playbook_learning_position", "Stream sequence the learning service has learned up "
                                "to", value=status.position)
        yield GaugeMetricFamily("playbook_learning_lag_events", "Events stored but not yet learned",
                                value=status.lag)
        yield GaugeMetricFamily("playbook_learning_rebuilding", "1 while the learning service learns again from "
                                "the first event", value=int(status.rebuilding))
        listed = GaugeMetricFamily("playbook_learning_listed", "Playbooks and targets the learning service lists "
                                   "(its insights show)", labels=["kind"])
        listed.add_metric(["playbooks"], status.playbooks)
        listed.add_metric(["targets"], status.targets)
        yield listed
        evicted = CounterMetricFamily("playbook_learning_evicted", "Listed once, then made room for: the oldest "
                                      "texts (of whoever sent most), environments, targets", labels=["kind"])
        for kind in ("texts", "environments", "targets"):
            evicted.add_metric([kind], status.evicted.get(kind, 0))
        yield evicted
        left_out = CounterMetricFamily("playbook_learning_left_out", "Runs whose playbook could not be listed for "
                                       "want of room (every listed one a catalog playbook), since the learning "
                                       "service started", labels=["kind"])
        left_out.add_metric(["playbooks"], status.left_out.get("playbooks", 0))
        yield left_out


def runs(metrics: Metrics) -> Iterator[Metric]:
    now = GaugeMetricFamily("playbook_runs", "Runs now in each status (finished runs stay in their last one)",
                            labels=["playbook", "status"])
    started = CounterMetricFamily("playbook_runs_started", "Runs started", labels=["playbook", "dry_run"])
    outcomes = CounterMetricFamily("playbook_run_outcomes", "How real (not dry) runs first ended",
                                   labels=["playbook", "outcome"])
    success = GaugeMetricFamily("playbook_run_success_ratio", "Completed / (completed + failed) over the "
                                "latest finished real runs", labels=["playbook"])
    duration = SummaryMetricFamily("playbook_completed_run_duration_seconds", "Duration of completed real runs",
                                   labels=["playbook"])
    rates = {item["playbook"]: item["success_rate"] for item in metrics.as_json()["playbooks"]}
    for name, stats in sorted(bounded_labels.playbooks(metrics).items()):
        for status in sorted(set(RUN_STATUSES) | set(stats.by_status)):   # 0, not a vanished series, when none are
            now.add_metric([name, status], stats.by_status.get(status, 0))
        started.add_metric([name, "false"], stats.runs - stats.dry_runs)
        started.add_metric([name, "true"], stats.dry_runs)
        for outcome, n in sorted(stats.outcomes.items()):
            outcomes.add_metric([name, outcome], n)
        if rates.get(name) is not None and name != bounded_labels.OTHER:
            success.add_metric([name], rates[name])
        duration.add_metric([name], stats.completed_count, stats.completed_sum_ms / 1000)
    yield from (now, started, outcomes, success, duration)


def steps(metrics: Metrics) -> Iterator[Metric]:
    durations = HistogramMetricFamily("playbook_step_duration_seconds", "Duration of timed step attempts",
                                      labels=["playbook", "step"])
    attempts = CounterMetricFamily("playbook_step_attempts", "Step attempts by outcome (failures the engine "
                                   "caused, by cancelling or losing an executor, left out)",
                                   labels=["playbook", "step", "outcome"])
    retries = CounterMetricFamily("playbook_step_retries", "Retries scheduled", labels=["playbook", "step"])
    for (playbook, step), stats in sorted(bounded_labels.steps(metrics).items()):
        labels = [playbook, step]
        cumulative, buckets = 0, []
        for bound, n in zip(BUCKET_BOUNDS, stats.buckets):
            cumulative += n
            buckets.append((bound, cumulative))
        durations.add_metric(labels, [*buckets, ("+Inf", stats.count)], stats.sum_ms / 1000)
        attempts.add_metric([*labels, "succeeded"], stats.succeeded)
        attempts.add_metric([*labels, "failed"], stats.failed)
        retries.add_metric(labels, stats.retries)
    by_category = CounterMetricFamily("playbook_retries", "Retries scheduled, by error category",
                                      labels=["category"])
    for category, n in sorted(metrics.retries_by_category.items()):
        by_category.add_metric([category], n)
    yield from (durations, attempts, retries, by_category)


def gates_and_circuits(metrics: Metrics) -> Iterator[Metric]:
    yield GaugeMetricFamily("playbook_approvals_waiting", "Gates asked and not yet decided, in active runs",
                            value=metrics.approvals_waiting)
    states = GaugeMetricFamily("playbook_circuit_state", "1 for the state each breaker is in, 0 for the "
                               "others; key (other): how many of the breakers past the first 200 are in each",
                               labels=["key", "state"])
    openings = CounterMetricFamily("playbook_circuit_openings", "Times each breaker opened", labels=["key"])
    in_states, opened = bounded_labels.circuits(metrics)
    for key, counts in sorted(in_states.items()):
        for candidate in CIRCUIT_STATES:
            states.add_metric([key, candidate], counts.get(candidate, 0))
        openings.add_metric([key], opened[key])
    yield from (states, openings)
    abandoned = CounterMetricFamily("playbook_messages_abandoned", "Run messages a service gave up on after every "
                                    "delivery (MessageAbandoned; its run is failed or stopped by the safety net)",
                                    labels=["consumer"])
    for consumer, n in sorted(metrics.abandoned.items()):   # only the engine writes these: a few consumer names
        abandoned.add_metric([consumer], n)
    yield abandoned


# -- serving ---------------------------------------------------------------------------------

SCRAPE = web.AppKey("prometheus", tuple)   # (CollectorRegistry, ViewsCollector)


async def metrics_text(request: web.Request) -> web.Response:
    if request.app[BACKEND].settings.metrics_access != "open":
        await permit(request, "read", Resource())     # a viewer of every playbook (PLAYBOOK_METRICS=open: anyone)
    registry, collector = request.app[SCRAPE]
    backend = request.app[BACKEND]
    collector.stream_last_seq = await _stream_last_seq(backend.nc)
    collector.learning, collector.learning_down = await _learning_status(backend, request.get(CALLER))
    collector.workers = await _workers(backend.nc)
    # No await from here on: this scrape's sequence is the one collected.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encode(registry), headers={"Content-Type": content_type})


async def _stream_last_seq(nc: NATS) -> int | None:
    """None if the stream cannot be asked now: the lag is then left out, not guessed."""
    if not nc.is_connected:
        return None
    try:
        info = await asyncio.wait_for(nc.jetstream().stream_info(subjects.RUNS_STREAM), STREAM_INFO_TIMEOUT)
    except Exception:  # noqa: BLE001 - a scrape reports what it can; /readyz says why the stream is not there
        return None
    return info.state.last_seq


async def _workers(nc: NATS) -> dict[str, Worker]:
    if not nc.is_connected:
        return {}
    try:
        return await asyncio.wait_for(workers(nc), STREAM_INFO_TIMEOUT)
    except Exception:  # noqa: BLE001 - as the stream's last sequence: reported when it can be asked
        return {}


async def _learning_status(backend: Backend, caller: Caller | None) -> tuple[LearningStatus | None, bool]:
    """Asked as the scraper (a viewer may read it): its status, and whether it is down (asked, no answer). Not
    asked without a caller (metrics open to anyone) or a connection; a refusal says nothing of it either."""
    if caller is None or not backend.nc.is_connected:
        return None, False
    try:
        return await LearningClient(backend.nc, backend.client.headers(caller)).status(
            timeout=STREAM_INFO_TIMEOUT), False
    except EngineUnavailable:
        return None, True
    except PlaybookError:
        return None, False


def add_routes(app: web.Application) -> None:
    registry = CollectorRegistry(auto_describe=False)
    collector = ViewsCollector(app[BACKEND].projector)
    registry.register(collector)
    ProcessCollector(registry=registry)
    app[SCRAPE] = (registry, collector)
    app.router.add_get("/metrics", metrics_text)
