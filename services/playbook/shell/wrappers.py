"""Wrappers taken off a command so the program that really runs is the one checked.

`sudo`, `env`, `xargs`, `busybox`, `timeout`... are removed; `ssh host CODE`, `su -c`,
`watch`, `flock -c`, `env -S` become the `sh -c CODE` they amount to; `docker|podman exec`,
`docker run IMAGE`, `kubectl exec POD --` give the command they run inside.
"""
from __future__ import annotations

import posixpath
from collections.abc import Callable

from services.playbook.shell.model import Call, Word, basename, literal, skip_options, synthetic, text_word
from services.playbook.shell.syntax import Simple

_VALUE = frozenset  # options of a wrapper that take a value
# wrapper -> (its options that take a value, positional words before the wrapped command)
_WRAPPERS: dict[str, tuple[frozenset[str], int]] = {
    "sudo": (_VALUE("-u -g -C -D -h -p -r -t -U -T --user --group --chdir --host --prompt --role --type "
                    "--other-user --close-from --command-timeout".split()), 0),
    "doas": (_VALUE({"-u", "-C"}), 0), "pkexec": (_VALUE({"--user"}), 0),
    "env": (_VALUE({"-u", "-C", "--unset", "--chdir", "-S", "--split-string"}), 0),
    "nohup": (_VALUE(), 0), "exec": (_VALUE({"-a"}), 0), "builtin": (_VALUE(), 0), "command": (_VALUE(), 0),
    "time": (_VALUE({"-f", "-o", "--format", "--output"}), 0), "setsid": (_VALUE(), 0),
    "nice": (_VALUE({"-n", "--adjustment"}), 0), "ionice": (_VALUE({"-c", "-n", "-p", "--class", "--classdata"}), 0),
    "timeout": (_VALUE({"-s", "-k", "--signal", "--kill-after"}), 1),
    "stdbuf": (_VALUE({"-i", "-o", "-e"}), 0), "unbuffer": (_VALUE(), 0),
    "chroot": (_VALUE({"--userspec", "--groups"}), 1), "taskset": (_VALUE(), 1), "chrt": (_VALUE(), 1),
    "nsenter": (_VALUE("-t -S -G -m -u -i -n -p -U -C -r -w --target --setuid --setgid".split()), 0),
    "unshare": (_VALUE({"--map-user", "--map-group", "--propagation", "--setgroups"}), 0),
    "runuser": (_VALUE({"-u", "-g", "-G", "--user", "--group", "--supp-group"}), 0),
    "cgexec": (_VALUE({"-g"}), 0), "faketime": (_VALUE({"-f"}), 1), "catchsegv": (_VALUE(), 0),
    "strace": (_VALUE("-o -e -p -s -u -E -P -I -a -b -O -S -X".split()), 0), "ltrace": (_VALUE({"-o", "-e", "-p"}), 0),
    "busybox": (_VALUE(), 0), "toybox": (_VALUE(), 0), "proxychains": (_VALUE({"-f"}), 0), "torsocks": (_VALUE(), 0),
    "systemd-run": (_VALUE("-p -u -E -M --property --unit --description --slice --uid --gid --setenv --machine "
                           "--working-directory --on-calendar --on-active".split()), 0),
    "xargs": (_VALUE("-I -d -E -L -n -P -s -a --delimiter --max-args --max-procs --max-lines --arg-file "
                     "--replace --eof --max-chars --process-slot-var".split()), 0),
}
_SSH_VALUES = _VALUE("-b -c -D -E -e -F -I -i -J -L -l -m -O -o -p -Q -R -S -W -w -B -P".split())
_CONTAINER_VALUES = _VALUE(
    "-e --env --env-file -u --user -w --workdir --detach-keys -v --volume -p --publish --name --network --net "
    "--entrypoint -m --memory --cpus -h --hostname -l --label --mount --restart --log-driver --log-opt --add-host "
    "--dns --device --cap-add --cap-drop --security-opt --ulimit --pid --ipc --platform --pull --tmpfs --gpus "
    "--shm-size --stop-signal --label-file --group-add -c --container -n --namespace --pod-running-timeout "
    "--cpu-shares --userns --uts --cgroupns --runtime --expose --link --volumes-from -a --attach".split())
_WATCH_VALUES = _VALUE({"-n", "--interval", "-q", "--equexit"})
_FLOCK_VALUES = _VALUE({"-w", "--timeout", "-E", "--conflict-exit-code"})


def unwrap(call: Call) -> Call:
    """Take wrappers off until the program that really runs is the command word."""
    words = [call.word] + call.args if call.word else []
    i = 0
    while i < len(words):
        name = basename(words[i])
        special = _SPECIAL_WRAPPERS.get(name)
        if special is not None and (inner := special(call, words, i)) is not None:
            return inner
        if name in _WRAPPERS and not (name == "command" and _value(words, i + 1) in ("-v", "-V")):
            options, positional = _WRAPPERS[name]
            start = i + 1
            i = skip_options(words, start, options)
            call.via.append(name)
            if name == "env":
                if (split := _split_string(words[start:i])) is not None:
                    return _as_shell(call, words[start - 1], split)
                while i < len(words) and "=" in (literal(words[i]) or "") and not literal(words[i]).startswith("="):
                    i += 1
            if name == "xargs":
                replace = next((_value(words, k + 1) for k in range(start, i) if _value(words, k) in (
                    "-I", "--replace")), None)
                call.xargs = replace or "{}" if replace is not None else ""
            i += positional
            continue
        break
    if i >= len(words):
        call.word, call.args = None, []
        return call
    call.word, call.args = words[i], words[i + 1:]
    call.name = posixpath.basename(literal(words[i]) or "") if words[i].static else _which(words[i])
    if call.name and not words[i].static:
        call.via.append("which")
    return call


def _which(word: Word) -> str:
    """`$(which python3)`, `$(command -v kubectl)`: the program is named, only its directory is looked up."""
    if len(word.parts) > 2 or any(p.kind not in ("text", "command") or (p.kind == "text" and p.text)
                                  for p in word.parts):
        return ""
    bodies = [p.body for p in word.parts if p.kind == "command"]
    if len(bodies) != 1 or bodies[0] is None or len(bodies[0].pipelines) != 1:
        return ""
    commands = bodies[0].pipelines[0].commands
    words = commands[0].words if len(commands) == 1 and isinstance(commands[0], Simple) else []
    values = [literal(w) for w in words]
    if values[:1] == ["which"] or values[:2] in (["command", "-v"], ["type", "-P"]):
        name = values[-1] if len(values) in (2, 3) else None
        return posixpath.basename(name) if name and not name.startswith("-") else ""
    return ""


def _value(words: list[Word], i: int) -> str | None:
    return literal(words[i]) if i < len(words) else None


def _split_string(options: list[Word]) -> Word | None:
    """`env -S 'STRING'`: the string env splits into a command."""
    for k, word in enumerate(options):
        value = literal(word) or ""
        if value in ("-S", "--split-string") and k + 1 < len(options):
            return options[k + 1]
        if value.startswith("--split-string="):
            return text_word(value.partition("=")[2], word.start)
        if value.startswith("-S") and not value.startswith("--"):
            return text_word(value[2:], word.start)
    return None


def _as_shell(call: Call, wrapper: Word, code: Word) -> Call:
    """A wrapper that hands a string to a shell is analysed as `sh -c STRING`, shown as written."""
    call.via.append(basename(wrapper))
    call.name, call.word, call.args = "sh", wrapper, [text_word("-c", code.start), code]
    return call


def _ssh(call: Call, words: list[Word], i: int) -> Call | None:
    start = skip_options(words, i + 1, _SSH_VALUES)
    rest = words[start + 1:]
    return _as_shell(call, words[i], synthetic(rest)) if rest else None


def _dash_c(call: Call, words: list[Word], i: int) -> Call | None:
    """`su -c CODE`, `runuser -c`, `script -c`, `flock FILE -c`: the option's value is shell code."""
    for k in range(i + 1, len(words) - 1):
        if _value(words, k) in ("-c", "--command"):
            return _as_shell(call, words[i], words[k + 1])
    return None


def _watch(call: Call, words: list[Word], i: int) -> Call | None:
    start = skip_options(words, i + 1, _WATCH_VALUES)
    if any(_value(words, k) in ("-x", "--exec") for k in range(i + 1, start)) or start >= len(words):
        return _rest(call, words, start, "watch")
    return _as_shell(call, words[i], synthetic(words[start:]))


def _flock(call: Call, words: list[Word], i: int) -> Call | None:
    start = skip_options(words, i + 1, _FLOCK_VALUES)
    return _dash_c(call, words, i) or _rest(call, words, start + 1, "flock")


def _container(call: Call, words: list[Word], i: int) -> Call | None:
    """`docker exec C cmd`, `docker run IMAGE cmd`, `docker compose exec S cmd`, `kubectl exec P -- cmd`."""
    k = i + 1
    if _value(words, k) == "compose" or basename(words[i]) == "docker-compose":
        k += 0 if basename(words[i]) == "docker-compose" else 1
    if _value(words, k) not in ("exec", "run"):
        return None
    tool = f"{basename(words[i])} {_value(words, k)}"
    if basename(words[i]) in ("kubectl", "oc"):
        dashes = next((j for j in range(k + 1, len(words)) if _value(words, j) == "--"), None)
        if dashes is not None:
            return _rest(call, words, dashes + 1, tool)
    start = skip_options(words, k + 1, _CONTAINER_VALUES)
    entrypoint = next((words[j + 1] for j in range(k + 1, min(start, len(words) - 1))
                       if _value(words, j) == "--entrypoint"), None)
    if entrypoint is not None:  # `docker run --entrypoint sh IMAGE -c CODE` runs `sh -c CODE`
        call.via.append(tool)
        call.word, call.args = entrypoint, words[start + 1:]
        return unwrap(call)
    return _rest(call, words, start + 1, tool)


def _rest(call: Call, words: list[Word], start: int, wrapper: str) -> Call | None:
    if start >= len(words):
        return None
    call.via.append(wrapper)
    call.word, call.args = words[start], words[start + 1:]
    return unwrap(call)


_SPECIAL_WRAPPERS: dict[str, Callable[[Call, list[Word], int], Call | None]] = {
    "ssh": _ssh, "su": _dash_c, "runuser": _dash_c, "watch": _watch, "flock": _flock, "script": _dash_c,
    "docker": _container, "podman": _container, "nerdctl": _container, "docker-compose": _container,
    "kubectl": _container, "oc": _container,
}
