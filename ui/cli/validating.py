"""`playbook validate`: the language's checks of a playbook file, here, without the engine.

Its own module, so checking a file loads no NATS client nor the engine's read side (a third of the
command's start).
"""
from __future__ import annotations

import argparse
import gc
from typing import TYPE_CHECKING

from ui.cli import insights as insights_command
from ui.cli.common import parse_params, read_playbook
from ui.cli.exits import EXIT_INVALID

if TYPE_CHECKING:
    from services.settings import Settings


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from services.playbook import validate_playbook
    path, text = read_playbook(args.file)
    params = parse_params(args.param) if args.param else None
    # No cyclic garbage collection while the file is checked: its data is millions of objects that only grow
    # older, and each full collection walks them all (at 100,000 steps, 10 of them took 1.4 s of 12); checking
    # leaves little cyclic garbage. Paused here, at the process edge: the pause is the whole process's, and the
    # engine checks playbooks in threads.
    gc.disable()
    try:
        diagnostics = validate_playbook(text, str(path), parameters=params, environment=args.env)
    finally:
        gc.enable()
    if args.insights:
        diagnostics += insights_command.validation_advice(text, str(path), settings, args.env)
    if args.json:
        print(msgspec.json.encode(diagnostics).decode())
    else:
        for diagnostic in diagnostics:
            print(diagnostic.format())
    errors = sum(1 for d in diagnostics if d.severity == "error")
    if not args.json:
        print(f"{path}: {errors} error(s), {len(diagnostics) - errors} other finding(s)")
    return EXIT_INVALID if errors else 0
