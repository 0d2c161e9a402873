"""How an engine process runs its event loop: the loop takes the GIL back from busy threads quickly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import asyncio, sys
from app.root import SWITCH_INTERVAL, run_engine

async def main() -> float:
    return sys.getswitchinterval()

print(run_engine(main()) == SWITCH_INTERVAL < 0.005)
"""


def test_an_engine_process_hands_the_gil_back_to_its_loop_sooner_than_python_does() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "True", done.stderr
