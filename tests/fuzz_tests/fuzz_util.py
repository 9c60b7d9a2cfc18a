"""What every fuzz test shares: the settings, the mutations, and the guard that judges one call.

A fuzzed call may succeed or raise one of the project's error types whose message names the input;
anything else fails the example: a bare exception (IndexError, KeyError, struct.error,
UnicodeDecodeError, ZeroDivisionError, MemoryError, ...), a call that does not return within
``TIMEOUT_S`` (a hang), or a call whose Python/numpy allocations peak above ``MAX_ALLOC_MB`` (a header
field that asks for gigabytes must be refused, not attempted; tracemalloc sees numpy's buffers).

Examples per test: ``SPIKEWIRE_FUZZ_EXAMPLES`` (default 100, about 45 s for the suite; 1000 for a long local run).
Every guarded call is counted per target in ``CASES``; the fuzz conftest prints the counts at the end.
"""

from __future__ import annotations

import os
import threading
import tracemalloc
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from models.network import ModelError
from runtime.chips.compile import CompileError
from runtime.config import ConfigError
from sensors.blocks import InputError

EXAMPLES = int(os.environ.get("SPIKEWIRE_FUZZ_EXAMPLES", "100"))
TIMEOUT_S = float(os.environ.get("SPIKEWIRE_FUZZ_TIMEOUT_S", "30"))
MAX_ALLOC_MB = 256.0

# deadline=None: the first call of a numba kernel compiles (or loads its cache) and would trip hypothesis'
# deadline; hangs are caught by the thread guard instead. The database stays off so that CI runs are
# reproducible from the seed printed on failure (hypothesis prints the failing example).
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)

CASES: Counter[str] = Counter()
"""Guarded calls per target, for the summary line."""

PROJECT_ERRORS: tuple[type[Exception], ...] = (InputError, ConfigError, ModelError, CompileError)


class Outcome:
    """What a guarded call did: its value, or the project error it raised."""

    def __init__(self, value: Any = None, error: Exception | None = None, peak_mb: float = 0.0) -> None:
        self.value = value
        self.error = error
        self.peak_mb = peak_mb


def guarded(
    target: str,
    fn: Callable[[], Any],
    *,
    names: str | None,
    allowed: tuple[type[Exception], ...] = (InputError,),
    timeout_s: float = TIMEOUT_S,
) -> Outcome:
    """Run ``fn`` in a thread with a timeout and allocation tracking; judge how it ended.

    ``names``: a string the error message must contain (the file path, field name...), or None.
    """
    CASES[target] += 1
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # judged below, in the test's thread
            box["error"] = exc

    tracemalloc.start()
    try:
        worker = threading.Thread(target=run, name=f"fuzz-{target}", daemon=True)
        worker.start()
        worker.join(timeout_s)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    peak_mb = peak / 1e6
    if worker.is_alive():
        msg = f"{target}: the call did not return within {timeout_s} s (a hang)"
        raise AssertionError(msg)
    if peak_mb > MAX_ALLOC_MB:
        msg = f"{target}: the call allocated {peak_mb:.0f} MB (limit {MAX_ALLOC_MB:.0f} MB): a header was trusted"
        raise AssertionError(msg)
    error = box.get("error")
    if error is None:
        return Outcome(value=box.get("value"), peak_mb=peak_mb)
    if type(error) not in allowed and not (isinstance(error, allowed) and _is_project_error(error)):
        msg = f"{target}: bare {type(error).__name__} instead of {'/'.join(a.__name__ for a in allowed)}: {error}"
        raise AssertionError(msg) from error
    if names is not None and names not in str(error):
        msg = f"{target}: the error does not name {names!r}: {error}"
        raise AssertionError(msg) from error
    if not str(error).strip():
        msg = f"{target}: {type(error).__name__} with an empty message"
        raise AssertionError(msg) from error
    return Outcome(error=error, peak_mb=peak_mb)


def _is_project_error(error: Exception) -> bool:
    # Subclasses of the project's errors (EventFormatError is an InputError) are fine; a plain ValueError
    # is not, although the project's errors derive from it.
    return isinstance(error, PROJECT_ERRORS)


EXTREME_U32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000)
EXTREME_U64 = (0, 1, 2**63 - 1, 2**63, 2**64 - 1)


@st.composite
def mutated(draw: st.DrawFn, data: bytes, *, header_bytes: int = 64) -> bytes:
    """``data`` damaged in one to four ways: truncation, flipped/inserted/deleted bytes, extreme header fields.

    Offsets favour the first ``header_bytes`` (where sizes and counts live) half of the time.
    """
    out = bytearray(data)

    def offset(n: int) -> int:
        if n <= 0:
            return 0
        head = min(n, header_bytes)
        return draw(st.one_of(st.integers(0, head - 1), st.integers(0, n - 1)))

    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(("truncate", "flip", "insert", "delete", "u32", "u64", "text")))
        n = len(out)
        if kind == "truncate":
            del out[draw(st.integers(0, n)) :]
        elif kind == "flip" and n:
            i = offset(n)
            out[i] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            i = offset(n + 1)
            out[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete" and n:
            i = offset(n)
            del out[i : i + draw(st.integers(1, 16))]
        elif kind in ("u32", "u64") and n >= 8:
            width = 4 if kind == "u32" else 8
            i = offset(n - width + 1)
            value = draw(st.sampled_from(EXTREME_U32 if width == 4 else EXTREME_U64))
            order = draw(st.sampled_from(("little", "big")))
            out[i : i + width] = value.to_bytes(width, order)
        elif kind == "text" and n:
            # ASCII headers: a number replaced by an extreme or malformed one.
            i = offset(n)
            word = draw(st.sampled_from((b"0", b"-1", b"99999999999", b"nan", b"inf", b"1e308", b"x", b" ", b"\n")))
            out[i : i + len(word)] = word
    return bytes(out)
