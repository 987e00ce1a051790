"""The job kinds a client may enqueue, each with a params schema; nothing else can run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

if TYPE_CHECKING:
    from .models import Job
    from .reporter import Reporter

Runner = Callable[["Job", Any, "Reporter"], dict[str, Any] | None]


@dataclass(frozen=True)
class JobKind:
    name: str
    title: str
    params: type[BaseModel]
    run: Runner

    def params_schema(self) -> dict[str, Any]:
        return self.params.model_json_schema()


_KINDS: dict[str, JobKind] = {}


def job_kind(name: str, title: str, params: type[BaseModel]) -> Callable[[Runner], Runner]:
    """Register a function as the runner of kind `name`."""

    def register(run: Runner) -> Runner:
        if name in _KINDS:
            raise ValueError(f"job kind {name!r} registered twice")
        _KINDS[name] = JobKind(name=name, title=title, params=params, run=run)
        return run

    return register


def kind_get(name: str) -> JobKind | None:
    return _KINDS.get(name)


def kinds_all() -> list[JobKind]:
    return sorted(_KINDS.values(), key=lambda kind: kind.name)


def kind_names() -> list[str]:
    """The names of the kinds a client may enqueue (the API schema's `KindEnum`)."""
    return [kind.name for kind in kinds_all()]
