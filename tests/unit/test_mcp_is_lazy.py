"""The CLI's other commands start as fast as before: only `playbook mcp` loads the MCP SDK."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECK = """
import sys
from ui.cli.main import main
try:
    main(["--help"])
except SystemExit:
    pass
print(sorted(m for m in sys.modules if m == "mcp" or m.startswith(("mcp.", "ui.mcp", "pydantic", "uvicorn"))))
"""


def test_playbook_help_does_not_import_the_mcp_sdk() -> None:
    done = subprocess.run([sys.executable, "-c", CHECK], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "mcp" in done.stdout        # the command is listed all the same
