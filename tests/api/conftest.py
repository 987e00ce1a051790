"""Reports how much of the API the contract fuzzing covered."""

from __future__ import annotations

import sys

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    module = sys.modules.get("tests.api.test_schemathesis")
    cases = getattr(module, "CASES", None)
    if cases:
        by_phase = getattr(module, "PHASES", {})
        phases = ", ".join(f"{n} {phase}" for phase, n in sorted(by_phase.items()))
        terminalreporter.write_line(
            f"schemathesis: {len(cases)} operations, {sum(cases.values())} cases ({phases})"
        )
