"""`python -m app.docs [--check]`: write docs/events.md, language.md, cli.md and configuration.md from the code."""
from __future__ import annotations

import argparse
import sys

from app.docs import stale, write


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m app.docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a document is stale")
    args = parser.parse_args()
    if args.check:
        outdated = stale()
        for name in outdated:
            print(f"docs/{name} is stale: run python -m app.docs", file=sys.stderr)
        sys.exit(1 if outdated else 0)
    for name in write():
        print(f"wrote docs/{name}")


if __name__ == "__main__":
    main()
