"""Start-up checks that a dependency still has the private parts Switchboard relies on.

Each `*_internals` module keeps one dependency's private reach, and its `check()` is built
from these. The apps run every check in `ready()`, so an upgrade that removed or reshaped
one stops the process at start-up with the package, its version and the missing name, not
later on a socket or in a worker. Checks only look (attributes, signatures, the names a
function's code uses): no I/O, no side effects.
"""

from __future__ import annotations

import inspect
import platform
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from types import CodeType
from typing import Any

from django.core.exceptions import ImproperlyConfigured


class DependencyChanged(ImproperlyConfigured):
    """An installed dependency lacks a private part that Switchboard relies on."""


@dataclass(frozen=True)
class Reliance:
    """What one part of Switchboard needs from one package's internals."""

    package: str  # the distribution's name, as importlib.metadata knows it; "Python": CPython
    needed_by: str  # what needs it, for the message: "worker-reconnect patch"
    checked_against: str  # the releases it was checked against: "5.7.x"

    def installed_version(self) -> str:
        if self.package == "Python":
            return platform.python_version()
        try:
            return version(self.package)
        except PackageNotFoundError:
            return "(not installed)"

    def changed(self, problem: str) -> DependencyChanged:
        """The error for `problem` ("x.y is gone"), naming the package and its version."""
        return DependencyChanged(
            f"{self.package} {self.installed_version()}: {problem}; Switchboard's"
            f" {self.needed_by} needs it (checked against {self.checked_against})"
        )

    def attribute(self, owner: object, name: str, where: str) -> Any:
        """`owner.<name>`; `where` is how the message names `owner` ("kombu.transport.redis")."""
        try:
            return getattr(owner, name)
        except AttributeError:
            raise self.changed(f"{where}.{name} is gone") from None

    def parameters(self, function: Callable[..., Any], names: Sequence[str], where: str) -> None:
        """`function` still takes `names` first, in that order."""
        try:
            taken = list(inspect.signature(function).parameters)
        except (TypeError, ValueError):
            taken = []
        if taken[: len(names)] != list(names):
            raise self.changed(f"{where} takes ({', '.join(taken)}), not ({', '.join(names)}, ...)")

    def uses(self, function: Callable[..., Any], names: Sequence[str], where: str) -> None:
        """`function`'s code still reads or sets each of `names` (attributes or globals)."""
        code = getattr(inspect.unwrap(function), "__code__", None)
        found = set(_names(code)) if isinstance(code, CodeType) else set()
        missing = [name for name in names if name not in found]
        if missing:
            raise self.changed(f"{where} no longer uses {', '.join(missing)}")


def _names(code: CodeType) -> Iterator[str]:
    """The attribute and global names used by `code` and the functions defined inside it."""
    yield from code.co_names
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            yield from _names(constant)
