"""The project's own Python source, for tests about where a name may appear."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "api", "openapi", "realtime", "jobs", "chat")


def modules_mentioning(name: str) -> set[str]:
    """Paths (from the project root) of the project's modules whose text contains `name`."""
    return {
        path.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if name in path.read_text(encoding="utf-8")
    }
