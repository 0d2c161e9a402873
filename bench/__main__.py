"""`python -m bench <benchmark> [options]`: each benchmark is a module in the table below."""
from __future__ import annotations

import argparse
import sys

from bench import (
    as_run, big, cluster, concurrency, guardian, harness, huge, identity, learning, parallel, recovery, redaction,
    replay, shell_analysis, sse, steps, vs_ansible, waiting,
)

BENCHMARKS = {module.NAME: module for module in (steps, waiting, replay, sse, concurrency, parallel, recovery,
                                                   guardian, vs_ansible, identity, shell_analysis, redaction, learning,
                                                   big, as_run, cluster, huge)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Playbook Engine benchmarks")
    sub = parser.add_subparsers(dest="benchmark", required=True, metavar="benchmark")
    for name, module in BENCHMARKS.items():
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    args = parser.parse_args(argv)
    return harness.run_async(BENCHMARKS[args.benchmark].run(args))


if __name__ == "__main__":
    sys.exit(main())
