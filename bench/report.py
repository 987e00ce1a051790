"""Printing results: number formats, percentiles, text tables and server log excerpts."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.stack import LogReport


def fmt(value: float | None, spec: str) -> str:
    """`value` formatted with `spec`, or `-` when there is none."""
    return "-" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing (or b is 0)."""
    return a / b if a is not None and b else None


def percent(a: float | None, b: float | None) -> str:
    """a / b as a whole percentage (`%cpu` columns), or `-`."""
    value = ratio(a, b)
    return fmt(value * 100 if value is not None else None, ".0f")


def percentile(values: Iterable[float], fraction: float) -> float | None:
    """The value that `fraction` of `values` do not exceed (nearest rank); None if empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def verdict(ok: bool) -> str:
    """How a target line starts: PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def counts(counter: Mapping[str, int]) -> list[str]:
    """`key=count` for each key, in key order."""
    return [f"{k}={v}" for k, v in sorted(counter.items())]


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned text columns, two spaces apart."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [headers, [("-" * w) for w in widths], *rows]
    ]
    return "\n".join(lines)


def print_logs(logs: list[LogReport]) -> None:
    """Print each server log's count of error lines and its first ones."""
    for found in logs:
        print(
            f"\n{found.server} log ({found.label}, {found.part}): {found.error_lines} "
            f"error/warning lines, {found.path}\n{found.excerpt}"
        )
