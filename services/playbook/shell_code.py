"""Code the checks cannot read run as a program (PB409, PB410, PB412-PB415).

A string run by a shell (`sh -c`, `eval`, `ssh host`, a here-document into `sh`,
`echo ... | sh`) is parsed and checked like the step's own command. What cannot be read
(a variable, a substitution, a decoder's output, a download) is reported, not guessed.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from services.playbook.shell_analysis import calls
from services.playbook.shell_model import (
    MAX_DEPTH, Call, Code, Heredoc, Report, Word, literal, options, synthetic, text_word,
)
from services.playbook.shell_syntax import Compound, Part, Pipeline, Sequence, Simple, decode_escapes

SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "fish", "csh", "tcsh", "yash", "posh", "rbash", "ksh93"}
FETCHERS = {"curl", "wget", "fetch", "http", "https", "aria2c", "lwp-request", "GET", "xh", "curlie"}
_SHELL_VALUES = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})
# interpreter -> (options whose value is code, options that take another value)
_LANGUAGES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
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
_ALIASES = {"nodejs": "node", "luajit": "lua", "powershell": "pwsh", "irb": "ruby", "jruby": "ruby",
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
PROGRAMS = frozenset(SHELLS | set(_LANGUAGES) | set(_ALIASES) | {"eval", "source", "at", "batch", "pypy"})
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
    language = _language(name)
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


@functools.lru_cache(maxsize=1024)
def _language(name: str) -> str:
    if re.fullmatch(r"python[\d.]*|pypy[\d.]*", name):
        return "python"
    if re.fullmatch(r"(perl|ruby|php|lua|node)[\d.]*", name):
        return re.sub(r"[\d.]+$", "", name)
    name = _ALIASES.get(name, name)
    return name if name in _LANGUAGES else ""


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
    """A word run as code: read it when it is written out, else say why it cannot be read."""
    shown = call.shown()
    if any(p.kind == "ref" for p in word.parts):
        report.add("PB412", call.at, f"'{shown}' evaluates a string holding a ${{...}} value a second time, so "
                                     "quoting no longer protects it and a value with quotes or ';' runs as code; pass "
                                     "the value as an argument (sh -c '... \"$1\"' sh ${value}) or as an environment "
                                     "variable")
        return
    if any(p.body is not None and fetches(p.body, call.code) for p in _all_parts(word.parts)):
        report.add("PB410", call.at, _download(shown))
        return
    if not word.static:
        if language == "shell" and _only_variables(word):
            return _code(call, word, report, language)
        report.add("PB414", call.at, f"'{shown}' runs as {_named(language)} code a string only known at run time "
                                     f"({call.code.show(word)}), which no check can read; write the code out in the "
                                     "step, or run a reviewed script file")
        return
    _code(call, word, report, language)


def _only_variables(word: Word) -> bool:
    """`sh -c "cd $DIR && make"`: variables inside written-out code; the code itself is readable."""
    return all(p.kind in ("text", "param") for p in word.parts) and any(
        p.kind == "text" and p.quoted and p.text.strip() for p in word.parts)


def _code(call: Call, word: Word, report: Report, language: str) -> None:
    text = "".join(p.text if p.kind == "text" else f"${{{p.text}{p.modifier}}}" for p in word.parts)
    if language != "shell":
        return _inline(call, text, report, language)
    if call.code.depth >= MAX_DEPTH:
        report.add("PB414", call.at, f"'{call.shown()}' nests code in code more than {MAX_DEPTH} levels deep, past "
                                     "what the checks read; flatten the command")
        return
    report.run_code(call.code.inner(word, text))


def _stdin(call: Call, report: Report, language: str) -> None:
    """Code read from standard input: a here-document, a here-string, or what a pipeline feeds in."""
    for feed in call.feeds:
        if isinstance(feed, Heredoc):
            if language == "shell":
                report.run_code(Code(feed.body, call.code.refs, lambda at, s=feed.start: call.code.place(s + at),
                                     call.code.depth + 1))
            else:
                _inline(call, feed.body, report, language)
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
    report.add("PB414", call.at, f"'{call.shown()}' runs as {_named(language)} code what '{source}' writes at run "
                                 "time, which no check can read; write the commands in the step, or run a reviewed "
                                 "script file")


def _printed(program: str, values: list[str]) -> str:
    """What `printf FORMAT ARGS` or `echo -e WORDS` write: arguments in the format, escapes decoded."""
    if program != "printf":
        return decode_escapes(" ".join(values))
    rest = iter(values[1:])
    return decode_escapes(_FORMAT.sub(lambda m: next(rest, ""), values[0]))


def _interpreter(call: Call, report: Report, language: str) -> None:
    code_options, value_options = _LANGUAGES[language]
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


def _inline(call: Call, code: str, report: Report, language: str) -> None:
    """Code in another language, written out: what it may do that the shell checks would have flagged."""
    name = _named(language)
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


def _named(language: str) -> str:
    return {"shell": "shell", "python": "Python", "perl": "Perl", "ruby": "Ruby", "node": "JavaScript",
            "php": "PHP", "lua": "Lua", "pwsh": "PowerShell", "awk": "awk"}.get(language, language)


def _download(shown: str) -> str:
    return (f"'{shown}' runs code downloaded at run time without checking it, so whoever controls the URL (or the "
            "network) controls the host; download to a file, verify its checksum or signature, then run it")


def fork_bombs(sequence: Sequence, code: Code, report: Report) -> None:
    """Functions that start two copies of themselves, loops that never end and start processes in the background."""
    for compound in _compounds(sequence):
        if compound.kind == "function" and compound.name and _multiplies(compound.bodies[0], compound.name):
            report.add("PB409", code.place(compound.start),
                       f"fork bomb: function '{compound.name}' starts copies of itself in the background or in a "
                       "pipeline, which multiplies processes until the host stops responding; remove it")
        elif _endless(compound) and _spawns(compound.bodies[-1]):
            report.add("PB409", code.place(compound.start),
                       "fork bomb: a loop that never ends starts a background process on every turn without waiting "
                       "for it, which multiplies processes until the host stops responding; add 'wait', or bound "
                       "the loop")


def _compounds(sequence: Sequence) -> Iterator[Compound]:
    for pipeline in sequence.pipelines:
        for command in pipeline.commands:
            if isinstance(command, Compound):
                yield command
                for body in command.bodies:
                    yield from _compounds(body)


def _simples(sequence: Sequence) -> Iterator[tuple[Pipeline, Simple]]:
    for pipeline in sequence.pipelines:
        for command in pipeline.commands:
            if isinstance(command, Simple):
                yield pipeline, command
            else:
                for body in command.bodies:
                    yield from _simples(body)


def _multiplies(body: Sequence, name: str) -> bool:
    """The function starts itself in the background, or twice in one pipeline (`f | f`)."""
    per_pipeline: dict[int, int] = {}
    for pipeline, simple in _simples(body):
        if simple.words and literal(simple.words[0]) == name:
            if pipeline.background:
                return True
            per_pipeline[id(pipeline)] = per_pipeline.get(id(pipeline), 0) + 1
    return any(count >= 2 for count in per_pipeline.values())


def _endless(compound: Compound) -> bool:
    if compound.kind == "for((":
        clauses = compound.name.split(";")
        return len(clauses) == 3 and not clauses[1].strip()
    if compound.kind not in ("while", "until") or not compound.bodies:
        return False
    condition = compound.bodies[0].pipelines
    if len(condition) != 1 or len(condition[0].commands) != 1:
        return False
    command = condition[0].commands[0]
    if isinstance(command, Compound):
        return command.kind == "arith" and command.name.strip() not in ("", "0") and compound.kind == "while" and (
            command.name.strip().isdigit())
    words = [literal(w) for w in command.words]
    forever = {"while": [["true"], [":"], ["[", "1", "]"], ["test", "1"]], "until": [["false"]]}
    return words in forever[compound.kind] and not condition[0].negated


def _spawns(body: Sequence) -> bool:
    background = any(pipeline.background for pipeline, _ in _simples(body))
    waits = any(simple.words and literal(simple.words[0]) in ("wait", "sleep") for _, simple in _simples(body))
    return background and not waits
