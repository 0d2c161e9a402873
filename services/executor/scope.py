"""What one step attempt works within: its secrets, and the rules for the processes it starts.

The executor opens a scope for each attempt (validators, action, or rollback actions) and
the resilience service one for each remediation; actions find it here. An action run
without one knows no secrets and starts processes under the rules in the environment.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime

import msgspec

from events.run import RunStarted
from services.domain.run.state import playbook_of
from services.executor.processes import ProcessRules
from services.leases import AttemptId
from services.playbook.interpolate import Context
from services.secrets import AttemptSecrets, SecretSource, allowed_environment

_SECRET_NAME = re.compile(rb"\$\{\s*(?:raw:\s*)?secret:([A-Za-z0-9_./-]+)\s*\}")
_NAMES_KEPT = 1024


@dataclass(frozen=True, slots=True)
class StepScope:
    secrets: AttemptSecrets
    processes: ProcessRules
    attempt: AttemptId | None = None     # None: a remediation, which is no attempt of its own


_current: ContextVar[StepScope | None] = ContextVar("step_scope", default=None)
_names: OrderedDict[tuple[str, datetime], frozenset[str]] = OrderedDict()


def current_scope() -> StepScope | None:
    return _current.get()


def current_processes() -> ProcessRules:
    scope = _current.get()
    return scope.processes if scope else ProcessRules.from_environ()


def current_attempt() -> AttemptId | None:
    scope = _current.get()
    return scope.attempt if scope else None


def redacted(text: str) -> str:
    """The text without the current attempt's secrets (for what is logged rather than recorded)."""
    scope = _current.get()
    return scope.secrets.redactor.text(text) if scope else text


def enter_attempt(ctx: Context, started: RunStarted, source: SecretSource, rules: ProcessRules,
                  attempt: AttemptId | None = None) -> StepScope:
    """Give `ctx` the secrets and environment it may read, and make the scope current until this task ends.

    Every secret the run's playbook names is redacted from the attempt, used or not: a step
    could print one another step left behind.
    """
    secrets = AttemptSecrets(source, ctx.used_secrets)
    secrets.include(secret_names(started))
    ctx.secrets, ctx.env = secrets.get, allowed_environment()
    scope = StepScope(secrets, rules.for_playbook(playbook_of(started)[0].sandbox), attempt)
    _current.set(scope)
    return scope


def secret_names(started: RunStarted) -> frozenset[str]:
    """Every `${secret:NAME}` in the run's playbook and the engine's error handlers pinned on it."""
    key = (started.run_id, started.at)
    if (names := _names.get(key)) is None:
        text = msgspec.json.encode([playbook_of(started)[0], started.engine_error_handlers])
        names = frozenset(name.decode() for name in _SECRET_NAME.findall(text))
        _names[key] = names
        if len(_names) > _NAMES_KEPT:
            _names.popitem(last=False)
    return names
