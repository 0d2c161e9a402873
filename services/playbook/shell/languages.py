"""Code in other languages (`python -c`, `perl -e`, a here-document into `node`): what it may do.

PB409, PB414 or PB415 from a few patterns: the checks do not parse these languages, so
code that starts programs, deletes trees, forks in a loop or runs what it decodes is
reported by what it resembles; code that resembles none of these passes unread.
"""
from __future__ import annotations

import functools
import re

from services.playbook.shell.model import Call, Report

# interpreter -> (options whose value is code, options that take another value)
LANGUAGES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "python": (frozenset({"-c"}), frozenset({"-m", "-W", "-X", "-Q"})),
    "perl": (frozenset({"-e", "-E"}), frozenset({"-I", "-M", "-m", "-x", "-i", "-l", "-0"})),
    "ruby": (frozenset({"-e"}), frozenset({"-I", "-r", "-C", "-E", "-x"})),
    "node": (frozenset({"-e", "--eval", "-p", "--print"}), frozenset({"-r", "--require", "--import", "--loader"})),
    "php": (frozenset({"-r", "-B", "-R", "-E"}), frozenset({"-c", "-d", "-z", "-t", "-f"})),
    "lua": (frozenset({"-e"}), frozenset({"-l"})),
    "pwsh": (frozenset({"-c", "-command", "-Command", "-e", "-EncodedCommand", "-encodedcommand"}),
             frozenset({"-File", "-f"})),
    "Rscript": (frozenset({"-e"}), frozenset()),
    "expect": (frozenset({"-c"}), frozenset()),
    "awk": (frozenset(), frozenset({"-F", "-v", "-f", "--field-separator", "--assign", "--file"})),
}
ALIASES = {"nodejs": "node", "luajit": "lua", "powershell": "pwsh", "irb": "ruby", "jruby": "ruby",
           "gawk": "awk", "mawk": "awk", "nawk": "awk", "busybox-awk": "awk", "pypy": "python", "pypy3": "python",
           "perl5": "perl", "deno": "node", "bun": "node", "php-cli": "php"}
_RUNS = re.compile(r"\b(?:os\.(?:system|popen|exec\w*|spawn\w*)|subprocess|commands\.getoutput|pty\.spawn"
                   r"|system\s*\(|exec\s*\(|shell_exec|passthru|proc_open|popen|child_process|execSync|spawnSync"
                   r"|IO\.popen|Open3|Kernel\.(?:system|exec|spawn)|os\.execute|io\.popen|qx\s*[{(/]|%x\s*[{(]"
                   r"|Runtime\.getRuntime|Start-Process|Invoke-Expression|iex\b)|`[^`]+`|\bsystem\s+[\"']")
_DELETES = re.compile(r"\b(?:rmtree|rm_rf|rm_r|remove_tree|rimraf|rmSync|rmdirSync|deltree|Remove-Item\b[^;\n]*"
                      r"-Recurse)")
_FORKS = re.compile(r"\bfork\b|\bos\.fork\b|\bPcntl_fork\b|\bpcntl_fork\b", re.IGNORECASE)
_LOOPS = re.compile(r"\b(?:while|for|loop|until|repeat)\b")
_DECODES = re.compile(r"\b(?:b64decode|base64|decode|unpack|fromCharCode|zlib|marshal|codecs|FromBase64String"
                      r"|decompress)\b")
_EVALS = re.compile(r"\b(?:exec|eval|compile|Function)\s*\(|\beval\b")

LANGUAGE_NAMES = frozenset(set(LANGUAGES) | set(ALIASES) | {"pypy"})


@functools.lru_cache(maxsize=1024)
def language_of(name: str) -> str:
    if re.fullmatch(r"python[\d.]*|pypy[\d.]*", name):
        return "python"
    if re.fullmatch(r"(perl|ruby|php|lua|node)[\d.]*", name):
        return re.sub(r"[\d.]+$", "", name)
    name = ALIASES.get(name, name)
    return name if name in LANGUAGES else ""


def inline(call: Call, code: str, report: Report, language: str) -> None:
    """Code in another language, written out: what it may do that the shell checks would have flagged."""
    name = named(language)
    shown = call.shown()
    forks = _FORKS.search(code)
    if forks and _LOOPS.search(code):
        report.add("PB409", call.at, f"fork bomb: '{shown}' runs {name} code that forks in a loop, multiplying "
                                     "processes until the host stops responding; remove it")
    elif _DECODES.search(code) and _EVALS.search(code):
        report.add("PB414", call.at, f"'{shown}' decodes data and runs it as {name} code, which no check can read; "
                                     "write the code out in a reviewed script file")
    elif _DELETES.search(code):
        report.add("PB415", call.at, f"'{shown}' runs {name} code that deletes directory trees, which the shell "
                                     "checks cannot follow; delete with rm in the step, naming the directory")
    elif forks or _RUNS.search(code) or (language == "awk" and re.search(r"\|\s*getline|print[^;]*\|\s*\"", code)):
        report.add("PB415", call.at, f"'{shown}' runs {name} code that starts other programs or processes, which the "
                                     "shell checks cannot follow; run those programs as shell steps, or from a "
                                     "reviewed script file")


def named(language: str) -> str:
    return {"shell": "shell", "python": "Python", "perl": "Perl", "ruby": "Ruby", "node": "JavaScript",
            "php": "PHP", "lua": "Lua", "pwsh": "PowerShell", "awk": "awk"}.get(language, language)
