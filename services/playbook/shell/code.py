"""Code the checks cannot read run as a program (PB409, PB410, PB412-PB415).

A string run by a shell (`sh -c`, `eval`, `ssh host`, a here-document into `sh`,
`echo ... | sh`) is parsed and checked like the step's own command. What cannot be read
(a variable, a substitution, a decoder's output, a download) is reported, not guessed.
"""
from __future__ import annotations

import re
from collections.abc import Iterator

from services.playbook.shell.analysis import calls
from services.playbook.shell.model import (
    MAX_DEPTH, Call, Code, Heredoc, Report, Word, literal, options, synthetic, text_word,
)
from services.playbook.shell.languages import LANGUAGE_NAMES, LANGUAGES, inline, language_of, named
from services.playbook.shell.syntax import REF_CLOSE, REF_OPEN, Part, Sequence, Simple, decode_escapes

SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "fish", "csh", "tcsh", "yash", "posh", "rbash", "ksh93"}
FETCHERS = {"curl", "wget", "fetch", "http", "https", "aria2c", "lwp-request", "GET", "xh", "curlie"}
_SHELL_VALUES = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})
PROGRAMS = frozenset(SHELLS | LANGUAGE_NAMES | {"eval", "source", "at", "batch"})
_FORMAT = re.compile(r"%[-+ #0-9.]*[sbdiouxXc]")
_GLOB = re.compile(r"[*?]|\[.*\]")
_BRACE = re.compile(r"\{[^{}]*(,|\.\.)[^{}]*\}")
_SETUP = {"ssh-agent", "minikube", "pyenv", "rbenv", "nodenv", "direnv", "conda", "brew", "dircolors", "opam",
          "keychain", "gpg-agent", "docker-machine", "aws-vault", "fnm", "zoxide", "starship", "mise", "rtx"}
_SETUP_COMMANDS = {("kubectl", "completion"), ("gh", "completion"), ("helm", "completion")}


def code_checks(call: Call, report: Report) -> None:
    if call.word is not None and (reason := dynamic(call)):
        report.add("PB413", call.at, f"the program run by '{call.shown()}' is {reason}, so no check can see what "
                                     "runs (it could be rm or a shell); write the program's name out plainly")
    name = call.name
    language = language_of(name)
    if name in SHELLS:
        _shell(call, report)
    elif name == "eval":
        _eval(call, report)
    elif name in ("source", "."):
        _source(call, report)
    elif name == "alias":
        for word in call.args:
            if word.static and "=" in word.value:  # a later line may run the alias: its text is code
                _code(call, text_word(word.value.partition("=")[2], word.start), report, "shell")
    elif name in ("at", "batch") and not {"f", "l", "d", "r", "c"} & options(call.args).short:
        _stdin(call, report, "shell")
    elif language:
        _interpreter(call, report, language)


def dynamic(call: Call) -> str:
    """Why the command word's value is not written out, or "" when it is."""
    word = call.word
    if word is None:
        return ""
    if call.name and "which" in call.via:
        return ""
    for part in word.parts:
        if part.kind == "ref":
            return f"the value of {call.code.refs[int(part.text)].raw}"
        if part.kind == "param":
            return f"the value of ${part.text}"
        if part.kind in ("command", "process", "arith"):
            return "the output of a command substitution"
        if part.modifier == "$'":
            return "spelled with $'...' escapes"
        if not part.quoted and _GLOB.search(part.text):
            return "a file-name pattern (glob)"
        if not part.quoted and _BRACE.search(part.text):
            return "a brace expansion"
    if _disguised(word.parts, call.code.text):
        return "spelled with quotes or escapes inside its name"
    return ""


def _disguised(parts: list[Part], text: str) -> bool:
    """`r''m`, `"r"m`, `r\\m`: quoting that only hides a name (a leading `\\` that skips aliases is fine)."""
    runs: list[bool] = []
    written = [p for p in parts if p.text]
    for k, part in enumerate(parts):
        if not part.text:
            opens = part.modifier == '"' and k + 1 < len(parts) and parts[k + 1].quoted and parts[k + 1].text
            if not opens and written:
                return True  # empty quotes inside a name
        elif not runs or runs[-1] != part.quoted:
            runs.append(part.quoted)
    first = written[0] if written else None
    escaped = first is not None and first.quoted and len(first.text) == 1 and text[first.start:first.start + 1] == "\\"
    return len(runs) > 2 or (len(runs) == 2 and not escaped)


def _shell(call: Call, report: Report) -> None:
    opts = options(call.args, _SHELL_VALUES)
    if "c" in opts.short:
        if opts.operands:
            run_string(call, opts.operands[0], report)
        return
    script = opts.operands[0] if opts.operands else None
    if script is None or literal(script) in ("-", "/dev/stdin") or "s" in opts.short:
        _stdin(call, report, "shell")
    else:
        _script_file(call, script, report)


def _eval(call: Call, report: Report) -> None:
    if not call.args:
        return
    if _environment_setup(call.args):
        return
    run_string(call, call.args[0] if len(call.args) == 1 else synthetic(call.args), report)


def _source(call: Call, report: Report) -> None:
    script = call.args[0] if call.args else None
    if script is None:
        return
    if literal(script) in ("-", "/dev/stdin"):
        _stdin(call, report, "shell")
    else:
        _script_file(call, script, report)


def _script_file(call: Call, script: Word, report: Report) -> None:
    """`bash <(curl ...)`, `source <(...)`: the script is another command's output."""
    bodies = [p.body for p in script.parts if p.kind in ("process", "command")]
    if not bodies:
        return
    if any(body is not None and fetches(body, call.code) for body in bodies):
        report.add("PB410", call.at, _download(call.shown()))
    elif script.parts[0].kind == "process":
        report.add("PB414", call.at, f"'{call.shown()}' runs as code what another command prints at run time, which "
                                     "no check can read; write the commands in the step, or run a reviewed script "
                                     "file")


def run_string(call: Call, word: Word, report: Report, *, language: str = "shell") -> None:
    """A word run as code: read what is written out, and say why the rest cannot be read."""
    shown = call.shown()
    if any(p.kind == "ref" for p in word.parts):
        report.add("PB412", call.at, f"'{shown}' evaluates a string holding a ${{...}} value a second time, so "
                                     "quoting no longer protects it and a value with quotes or ';' runs as code; pass "
                                     "the value as an argument (sh -c '... \"$1\"' sh ${value}) or as an environment "
                                     "variable")
    elif any(p.body is not None and fetches(p.body, call.code) for p in _all_parts(word.parts)):
        report.add("PB410", call.at, _download(shown))
        return
    elif not word.static and not (language == "shell" and _only_variables(word)):
        report.add("PB414", call.at, f"'{shown}' runs as {named(language)} code a string only known at run time "
                                     f"({call.code.show(word)}), which no check can read; write the code out in the "
                                     "step, or run a reviewed script file")
    if word.static or (language == "shell" and any(p.kind == "text" and p.text.strip() for p in word.parts)):
        _code(call, word, report, language)  # what is written out is still checked


def _only_variables(word: Word) -> bool:
    """`sh -c "cd $DIR && make"`: variables inside written-out code; the code itself is readable."""
    return all(p.kind in ("text", "param") for p in word.parts) and any(
        p.kind == "text" and p.quoted and p.text.strip() for p in word.parts)


def _code(call: Call, word: Word, report: Report, language: str) -> None:
    text = "".join(_as_code(p) for p in word.parts)
    if language != "shell":
        return inline(call, text, report, language)
    if call.code.depth >= MAX_DEPTH:
        report.add("PB414", call.at, f"'{call.shown()}' nests code in code more than {MAX_DEPTH} levels deep, past "
                                     "what the checks read; flatten the command")
        return
    report.run_code(call.code.inner(word, text))


def _as_code(part: Part) -> str:
    """A part of a string run as code, as the inner shell will read it (a value it cannot see stays a value)."""
    if part.kind == "text":
        return part.text
    if part.kind == "ref":
        return f"{REF_OPEN}{part.text}{REF_CLOSE}"
    if part.kind == "param":
        return f"${{{part.text}{part.modifier}}}"
    return "${UNSEEN}"


def _stdin(call: Call, report: Report, language: str) -> None:
    """Code read from standard input: a here-document, a here-string, or what a pipeline feeds in."""
    for feed in call.feeds:
        if isinstance(feed, Heredoc):
            if language == "shell":
                report.run_code(Code(feed.body, call.code.refs, lambda at, s=feed.start: call.code.place(s + at),
                                     call.code.depth + 1))
            else:
                inline(call, feed.body, report, language)
            return
        if isinstance(feed, Word):
            return run_string(call, feed, report, language=language)
        if isinstance(feed, Call) and feed.name in FETCHERS:
            report.add("PB410", call.at, _download(f"{feed.name} ... | {call.shown()}"))
            return
    producer = call.feeds[0] if call.feeds else None
    if producer is None and not call.feeds:
        return
    if isinstance(producer, Call) and producer.name in ("echo", "printf") and producer.args:
        words = [w for w in producer.args if not (literal(w) or "").startswith("-")]
        escapes = producer.name == "printf" or any(literal(w) in ("-e", "-en", "-ne") for w in producer.args)
        if words and escapes and all(w.static for w in words):
            return _code(call, text_word(_printed(producer.name, [w.value for w in words]), words[0].start), report,
                         language)
        if words:
            return run_string(call, words[0] if len(words) == 1 else synthetic(words), report, language=language)
    if isinstance(producer, Call) and producer.name in ("cat", "tee") and not options(producer.args).operands:
        return _stdin(Call(call.name, call.word, call.args, [], call.code, producer.feeds), report, language)
    source = producer.shown() if isinstance(producer, Call) else "a compound command"
    report.add("PB414", call.at, f"'{call.shown()}' runs as {named(language)} code what '{source}' writes at run "
                                 "time, which no check can read; write the commands in the step, or run a reviewed "
                                 "script file")


def _printed(program: str, values: list[str]) -> str:
    """What `printf FORMAT ARGS` or `echo -e WORDS` write: arguments in the format, escapes decoded."""
    if program != "printf":
        return decode_escapes(" ".join(values))
    rest = iter(values[1:])
    return decode_escapes(_FORMAT.sub(lambda m: next(rest, ""), values[0]))


def _interpreter(call: Call, report: Report, language: str) -> None:
    code_options, value_options = LANGUAGES[language]
    args = call.args
    i = 0
    while i < len(args):
        value = literal(args[i]) or ""
        if value in code_options and i + 1 < len(args):
            return run_string(call, args[i + 1], report, language=language)
        glued = next((o for o in code_options if len(o) == 2 and value.startswith(o) and len(value) > 2), None)
        if glued and not value.startswith("--"):
            return run_string(call, text_word(value[2:], args[i].start), report, language=language)
        if value in value_options:
            if value in ("-m", "-f", "-File", "--file"):
                return  # a module or a script file
            i += 2
            continue
        if value == "-" or not value.startswith("-") or not value:
            break
        i += 1
    if language == "awk":
        if i < len(args):
            run_string(call, args[i], report, language=language)
        return
    if i >= len(args) or literal(args[i]) == "-":
        _stdin(call, report, language)
    else:
        _script_file(call, args[i], report)


def _environment_setup(args: list[Word]) -> bool:
    """`eval "$(ssh-agent -s)"`: a well-known tool printing environment settings, nothing else."""
    if len(args) != 1:
        return False
    subs = [p for p in args[0].parts if p.kind != "text"]
    if len(subs) != 1 or subs[0].kind != "command" or subs[0].body is None:
        return False
    pipelines = subs[0].body.pipelines
    if len(pipelines) != 1 or len(pipelines[0].commands) != 1 or not isinstance(pipelines[0].commands[0], Simple):
        return False
    words = pipelines[0].commands[0].words
    names = [literal(w) for w in words[:2]]
    return bool(words) and all(w.static for w in words) and (
        names[0] in _SETUP or tuple(names) in _SETUP_COMMANDS)


def _all_parts(parts: list[Part] | tuple[Part, ...]) -> Iterator[Part]:
    for part in parts:
        yield part
        yield from _all_parts(part.inner)


def fetches(body: Sequence, code: Code) -> bool:
    return any(call.name in FETCHERS for call in calls(body, code))


def _download(shown: str) -> str:
    return (f"'{shown}' runs code downloaded at run time without checking it, so whoever controls the URL (or the "
            "network) controls the host; download to a file, verify its checksum or signature, then run it")
