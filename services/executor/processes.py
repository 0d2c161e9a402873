"""Every process a step starts, started one way, with only what it needs.

A clean environment (PATH, HOME, TMPDIR, LANG, LC_ALL and TZ if the engine has them, USER,
LOGNAME, then the step's own `env:`, then the attempt's identity: PLAYBOOK_RUN_ID,
PLAYBOOK_STEP_ID, PLAYBOOK_ATTEMPT, PLAYBOOK_IDEMPOTENCY_KEY, and the engine process that
started it), no new privileges (setuid binaries do not elevate it), its own session and
process group, held by the guardian so that it dies with the engine process (`guardian`), a
private directory as HOME, TMPDIR and default working directory (emptied when the process
ends: `private_dirs`), an unprivileged user when the engine runs as root, and, when the
engine or the playbook asks for it, a bubblewrap sandbox. docs/security.md says what that
leaves a step.

no_new_privs is set on the engine's own process before its first step process (it is
inherited, and costs no wrapper per step), together with making the engine undumpable, so
that a step running as the engine's user cannot read the engine's environment from /proc.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import functools
import logging
import os
import pwd
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL, PIPE
from typing import Any, get_args

from events.playbook import Sandbox
from services.errors import PlaybookError
from services.executor.guardian import ATTEMPT_VARIABLE, OWNER_VARIABLE, Guardian
from services.executor.leftovers import this_process
from services.executor.private_dirs import PrivateDirs
from services.leases import AttemptId
from services.owners import user_name

SANDBOXES: tuple[str, ...] = get_args(Sandbox)
DEFAULT_STEP_USER = "nobody"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_DUMPABLE = 4
log = logging.getLogger(__name__)
_LIBC = ctypes.CDLL(None, use_errno=True)
_DIRS = PrivateDirs()
GUARDIAN = Guardian(lambda: this_process().marker)   # this process's: it holds every process group a step starts here


class StepProcessError(PlaybookError):
    """The engine cannot start a step's process the way it is configured to (category `configuration`)."""


@dataclass(frozen=True, slots=True)
class StepUser:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class ProcessRules:
    """The engine-wide rules, read once from its configuration; `for_playbook` adds a playbook's own wish."""

    user: StepUser | None = None                 # whom steps run as; None: the engine's own user
    sandbox: Sandbox = "none"
    path: str = DEFAULT_PATH
    locale: tuple[tuple[str, str], ...] = (("LANG", "C.UTF-8"),)
    hidden: tuple[str, ...] = ()                 # paths a sandboxed step must not see
    setpriv: str | None = None
    bwrap: str | None = None
    engine_uid: int = dataclasses.field(default_factory=os.geteuid)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, euid: int | None = None) -> ProcessRules:
        """PLAYBOOK_STEP_USER (when root; default nobody), PLAYBOOK_STEP_SANDBOX, PLAYBOOK_STEP_PATH."""
        environ = os.environ if environ is None else environ
        keys = ("PLAYBOOK_STEP_USER", "PLAYBOOK_STEP_SANDBOX", "PLAYBOOK_STEP_PATH", "PATH", "LANG", "LC_ALL", "TZ",
                "PLAYBOOK_SECRETS_FILE", "PLAYBOOK_HOME")
        return _rules(tuple((key, environ.get(key)) for key in keys), os.geteuid() if euid is None else euid)

    def isolation(self) -> tuple[int, str]:
        """What the engine's steps get, said at start (a log level and a sentence): whose they run as, and
        whether sandboxed. Steps sharing an ordinary engine's user unsandboxed can read its home: a warning."""
        sandboxed = self.sandbox == "bubblewrap"
        how = ("in a bubblewrap sandbox" if sandboxed else "unsandboxed (a playbook may ask for bubblewrap"
               + ("" if self.bwrap else ", which is not installed") + ")")
        if self.user:
            return logging.INFO, f"steps run as {self.user.name} (uid {self.user.uid}), {how}"
        own = user_name(self.engine_uid)
        if self.engine_uid == 0:
            return logging.INFO, f"steps run as root (PLAYBOOK_STEP_USER), {how}"
        if sandboxed:
            return logging.INFO, f"steps run as {own}, the engine's own user (not root: it cannot switch), {how}"
        return logging.WARNING, (f"steps run as {own}, the engine's own user (not root: it cannot switch), {how}: "
                                 "they may read and change this user's files, $PLAYBOOK_HOME and its credentials "
                                 "(the local admin's token) included; set PLAYBOOK_STEP_SANDBOX=bubblewrap to hide "
                                 "them, or run the engine as root (steps then run as PLAYBOOK_STEP_USER, nobody)")

    def for_playbook(self, sandbox: str | None) -> ProcessRules:
        """A playbook may ask for a sandbox the engine does not impose; it cannot turn off the engine's."""
        if sandbox == "bubblewrap" and self.sandbox != "bubblewrap":
            return dataclasses.replace(self, sandbox="bubblewrap")
        return self

    def environment(self, home: str, extra: Mapping[str, str] | None,
                    attempt: AttemptId | None = None) -> dict[str, str]:
        user = self.user.name if self.user else _own_name()
        env = {"PATH": self.path, "HOME": home, "TMPDIR": home, **dict(self.locale)}
        if user:
            env.update(USER=user, LOGNAME=user)
        env.update(extra or {})
        if attempt is not None:
            env.update(PLAYBOOK_RUN_ID=attempt.run_id, PLAYBOOK_STEP_ID=attempt.step_id,
                       PLAYBOOK_ATTEMPT=str(attempt.number), **{ATTEMPT_VARIABLE: attempt.key})
        env[OWNER_VARIABLE] = _owner()
        return env

    def argv(self, program: list[str], home: str, cwd: str) -> list[str]:
        """The program behind the wrappers that apply the rules (setpriv to switch user, bwrap)."""
        argv = list(program)
        if self.user and self.setpriv:
            argv = [self.setpriv, f"--reuid={self.user.uid}", f"--regid={self.user.gid}", "--clear-groups",
                    "--no-new-privs", "--", *argv]
        if self.sandbox == "bubblewrap":
            if not self.bwrap:
                raise StepProcessError("the step is to run in a bubblewrap sandbox, but bwrap is not installed on "
                                       "this executor (Debian: apt-get install bubblewrap)")
            argv = [self.bwrap, *_sandbox_options(home, cwd, self.hidden), "--", *argv]
        return argv

    def preexec(self) -> Callable[[], None] | None:
        """Only to switch user without setpriv: done in the child (slower: Python must fork, not vfork)."""
        if self.setpriv or not self.user:
            return None
        user = self.user

        def switch_user() -> None:
            os.setgroups([])
            os.setgid(user.gid)
            os.setuid(user.uid)
        return switch_user


@dataclass(frozen=True, slots=True)
class Launch:
    """One process of a step, ready to start."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    preexec: Callable[[], None] | None
    attempt: AttemptId | None = None

    @contextlib.contextmanager
    def held(self, group: int) -> Iterator[None]:
        """The guardian holds the process's group (killing it if this engine process dies) until the block ends."""
        GUARDIAN.hold(group, self.attempt.key if self.attempt else None)
        try:
            yield
        finally:
            GUARDIAN.forget(group)

    def start(self, protocol: Callable[[], asyncio.SubprocessProtocol], *, stdin: bool) -> Any:
        """The coroutine that starts it in its own session, its output piped to `protocol`."""
        return asyncio.get_running_loop().subprocess_exec(
            protocol, *self.argv, stdin=PIPE if stdin else DEVNULL, stdout=PIPE, stderr=PIPE,
            cwd=self.cwd, env=self.env, start_new_session=True, preexec_fn=self.preexec)


@contextlib.contextmanager
def step_process(rules: ProcessRules, program: list[str], env: Mapping[str, str] | None,
                 cwd: str | None, attempt: AttemptId | None = None) -> Iterator[Launch]:
    """A process to start under the rules, with a private directory that lasts until the block ends."""
    protect_engine()
    owner = (rules.user.uid, rules.user.gid) if rules.user else None
    home = _DIRS.take(owner)
    try:
        workdir = cwd or home
        yield Launch(rules.argv(program, home, workdir), rules.environment(home, env, attempt), workdir,
                     rules.preexec(), attempt)
    finally:
        _DIRS.give_back(home, owner)


@functools.cache
def _owner() -> str:
    """This engine process, as its step processes name it (so a successor can find them: `leftovers`)."""
    return this_process().marker


@functools.cache
def protect_engine() -> None:
    """no_new_privs for the engine and all it starts; undumpable, so a step running as the engine's own user
    can neither read its environment (and the secrets in it) through /proc/<pid>/environ nor attach to it.
    Also for an engine process that runs no step (`up`'s learning process): steps of `up` run as its user."""
    if not hasattr(_LIBC, "prctl"):
        log.warning("steps run without no_new_privs: this system has no prctl (it is Linux-only)")
        return
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)
    _prctl(_PR_SET_DUMPABLE, 0)


@functools.lru_cache(maxsize=16)
def _rules(settings: tuple[tuple[str, str | None], ...], euid: int) -> ProcessRules:
    config = dict(settings)
    sandbox = config["PLAYBOOK_STEP_SANDBOX"] or "none"
    if sandbox not in SANDBOXES:
        raise StepProcessError(f"PLAYBOOK_STEP_SANDBOX is {sandbox!r}; use one of {', '.join(SANDBOXES)}")
    locale = tuple((key, config[key] or "") for key in ("LANG", "LC_ALL", "TZ") if config[key])
    hidden = tuple(str(Path(p).resolve()) for p in (config["PLAYBOOK_SECRETS_FILE"],
                                                    config["PLAYBOOK_HOME"] or ".playbook") if p)
    bwrap = shutil.which("bwrap")
    if sandbox == "bubblewrap" and not bwrap:
        raise StepProcessError("PLAYBOOK_STEP_SANDBOX is bubblewrap, but bwrap is not installed "
                               "(Debian: apt-get install bubblewrap)")
    return ProcessRules(user=_step_user(config["PLAYBOOK_STEP_USER"], euid), sandbox=sandbox,  # type: ignore[arg-type]
                        path=config["PLAYBOOK_STEP_PATH"] or config["PATH"] or DEFAULT_PATH,
                        locale=locale or (("LANG", "C.UTF-8"),), hidden=hidden,
                        setpriv=shutil.which("setpriv"), bwrap=bwrap, engine_uid=euid)


def _step_user(name: str | None, euid: int) -> StepUser | None:
    """The user steps run as: only a root engine can switch, and root itself (or uid 0) means do not."""
    if euid != 0 and not name:
        return None
    wanted = name or DEFAULT_STEP_USER
    try:
        entry = pwd.getpwuid(int(wanted)) if wanted.isdecimal() else pwd.getpwnam(wanted)
    except (KeyError, ValueError):
        raise StepProcessError(f"PLAYBOOK_STEP_USER is {wanted!r}, and there is no such user on this machine; "
                               "create it or name an unprivileged user that exists") from None
    if euid != 0 and entry.pw_uid != euid:     # asked for another user than its own: not silently ignored
        raise StepProcessError(f"PLAYBOOK_STEP_USER is {wanted!r}, but the engine runs as {user_name(euid)}, not root, "
                               "and cannot switch users: its steps would run as itself; unset PLAYBOOK_STEP_USER, "
                               "or start the engine as root")
    return None if entry.pw_uid in (0, euid) else StepUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _own_name() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return ""


def _sandbox_options(home: str, cwd: str, hidden: tuple[str, ...]) -> list[str]:
    """A read-only view of the machine with a private /tmp, /dev and /proc; writable only its own directory and
    the `cwd:` the step names; the engine's processes and files (secrets file, PLAYBOOK_HOME) out of sight.
    The network is shared: steps deploy things."""
    options = ["--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    for writable in dict.fromkeys((home, cwd)):
        options += ["--bind", writable, writable]
    for path in hidden:   # after the binds, which mount in order: a `cwd:` holding a hidden path must not show it
        if os.path.isdir(path):
            options += ["--tmpfs", path]
        elif os.path.exists(path):
            options += ["--ro-bind", "/dev/null", path]
    return [*options, "--chdir", cwd]


def _prctl(option: int, value: int) -> None:
    if _LIBC.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}) failed")
