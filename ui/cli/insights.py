"""`playbook insights [PLAYBOOK] [--json]` and `playbook insights rebuild`: what past runs taught, what to change."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from services.errors import PlaybookError
from ui.cli.connect import read, run, steer, with_client

if TYPE_CHECKING:   # loaded when the command runs, not when the CLI's arguments are read
    from events.insights import Distribution, Insights, PlaybookInsights, Recommendation
    from services.playbook.diagnostics import Diagnostic
    from services.settings import Settings
    from ui.client import EngineClient

HELP = "what the engine learned from past runs and what it recommends; `insights rebuild` learns again from zero"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("playbook", nargs="?", help="one playbook's insights (default: all), or `rebuild`")
    parser.add_argument("--env", metavar="NAME", help="only its runs in this environment (each is learned apart)")
    parser.add_argument("--json", action="store_true", help="the insights as JSON (events/insights.py)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for a rebuild")


def cmd_insights(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from ui.insights import LearningClient

    async def work(client: EngineClient) -> int:
        learning = LearningClient(client.nc, client.headers())
        if args.playbook == "rebuild":
            rebuilt = await learning.rebuild(timeout=args.timeout)
            print(msgspec.json.encode(rebuilt).decode() if args.json else
                  f"learned again from the first event: {rebuilt.events} events up to position {rebuilt.position}, "
                  f"in {rebuilt.seconds} s (store {rebuilt.generation})")
            return 0
        insights = await learning.insights(args.playbook, environment=args.env)
        if args.json:
            print(msgspec.json.encode(insights).decode())
        elif args.playbook and not insights.playbooks:
            print(f"nothing learned about playbook {args.playbook!r} yet: its runs teach the engine as they happen",
                  file=sys.stderr)
            return 1
        else:
            print(render(insights))
        return 0

    return steer(args, settings, work) if args.playbook == "rebuild" else read(settings, work)


def validation_advice(text: str, source: str, settings: Settings, environment: str | None = None) -> list[Diagnostic]:
    """`validate --insights`: what the playbook's past runs recommend, as infos at its steps' lines.

    Advice is optional: when the engine cannot be asked, validation goes on with a note on stderr."""
    from services.playbook.advice import advice, playbook_name
    from ui.insights import LearningClient, recommendations_for
    name = playbook_name(text)
    if name is None:
        return []

    async def work(client) -> int:  # type: ignore[no-untyped-def]
        learning = LearningClient(client.nc, client.headers())
        found.extend(recommendations_for(await learning.insights(name, environment=environment, wait=0), name))
        return 0

    found: list[Recommendation] = []
    try:
        run(with_client(settings, work))
    except PlaybookError as err:
        print(f"no insights: {err}", file=sys.stderr)
    return advice(text, source, found)


def render(insights: Insights) -> str:
    """The insights for a terminal: per playbook its steps and recommendations, then targets and correlations."""
    from ui.cli.render import table
    if not insights.playbooks and not insights.targets:
        return "nothing learned yet: runs teach the engine as they happen"
    lines: list[str] = []
    for playbook in insights.playbooks:
        outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(playbook.outcomes.items()))
        where = f" in {playbook.environment}" if playbook.environment else ""
        lines.append(f"{playbook.playbook}{where}: {playbook.runs} runs ({outcomes or 'none ended yet'})"
                     f"{_rate(playbook.success_rate)}{_durations(playbook.durations, ' runs take')}"
                     f"{_written(playbook)}")
        rows = [("step", "attempts", "passed", "success", "p50", "p99", "failures")]
        rows += [(s.step, str(s.attempts), str(s.passed), _percent(s.success_rate), *_p50_p99(s.durations),
                  ", ".join(f"{c} {n}" for c, n in sorted(s.failures_by_category.items())) or "-")
                 for s in playbook.steps]
        lines += ["  " + line for line in table(rows)]
        lines += _recommendations(playbook.recommendations)
        lines.append("")
    for target in insights.targets:
        lines.append(f"target {target.target}: {target.calls} calls, {target.failures} failed, {target.bursts} bursts "
                     f"(largest {target.largest_burst}), breaker opened {target.breaker_openings} times; "
                     f"called by {', '.join(target.steps) or 'no known step'}")
        lines += _recommendations(target.recommendations)
    if insights.correlations:
        lines.append("steps that fail together:")
        lines += [f"  {' + '.join(c.steps)}: {c.together} times within {c.window_seconds:g} s"
                  + (f" ({', '.join(c.targets)})" if c.targets else "") for c in insights.correlations]
    lines.append(f"(learned up to stream position {insights.position})")
    return "\n".join(lines).rstrip()


def _recommendations(recommendations: list[Recommendation]) -> list[str]:
    import yaml
    lines = []
    for r in recommendations:
        e = r.evidence
        window = f", {e.since:%Y-%m-%d} to {e.until:%Y-%m-%d}" if e.since and e.until else ""
        lines.append(f"  -> {r.kind}: {r.message} ({e.count} observations, confidence {e.confidence:.2f}{window})")
        if r.suggestion:
            text = yaml.safe_dump(r.suggestion, default_flow_style=None, sort_keys=False).rstrip()
            lines += ["       " + line for line in text.splitlines()]
    return lines


def _p50_p99(durations: Distribution | None) -> tuple[str, str]:
    if durations is None:
        return "-", "-"
    return _ms(durations.p50_ms), _ms(durations.p99_ms)


def _durations(durations: Distribution | None, label: str) -> str:
    if durations is None:
        return ""
    return f";{label} p50 {_ms(durations.p50_ms)}, p99 {_ms(durations.p99_ms)}"


def _ms(ms: float | None) -> str:
    from ui.cli.render import _ms as duration
    return "-" if ms is None else duration(ms)


def _percent(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.0%}"


def _written(playbook: PlaybookInsights) -> str:
    """Which way of writing the playbook the figures are of, when it changed; and how the way before did."""
    if playbook.changed is None:
        return ""
    version = f" version {playbook.version}" if playbook.version else ""
    before = f" version {playbook.version_before}" if playbook.version_before else ""
    return (f"; as written since {playbook.changed:%Y-%m-%d %H:%M} UTC{version} (before{before}: "
            f"{playbook.runs_before} runs{_rate(playbook.success_rate_before)})")


def _rate(rate: float | None) -> str:
    return "" if rate is None else f", {rate:.0%} completed"
