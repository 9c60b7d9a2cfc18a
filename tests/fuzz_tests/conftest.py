"""Prints how many fuzz cases ran, per target and overall (the figure the README quotes)."""

from __future__ import annotations

import pytest
from fuzz_util import CASES, EXAMPLES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CASES:
        return
    terminalreporter.section("fuzz cases")
    for target, n in sorted(CASES.items()):
        terminalreporter.write_line(f"{target:<28} {n:>7}")
    terminalreporter.write_line(f"{'total':<28} {sum(CASES.values()):>7}  (SPIKEWIRE_FUZZ_EXAMPLES={EXAMPLES})")
