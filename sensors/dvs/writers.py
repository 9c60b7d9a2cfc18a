"""Encoders of canonical events (``EVENT_DTYPE``) into each binary event-file format.

For tests and benchmarks: they make fixtures of any size that the readers must decode back to the same
events. Events must be sorted by time (the formats store a running time base) and fit the format's fields.
Counter wraps are written as the hardware would (timestamps modulo 2**34, 2**24, 2**32); long silences in
EVT files get extra TIME_HIGH words so that every wrap stays visible. AEDAT 4.0 has no writer (FlatBuffers
+ LZ4 packets; the ``aedat`` package only decodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensors.blocks import EVENT_DTYPE
from sensors.dvs.encode_kernel import EVT2_HIGH_STEP, EVT3_HIGH_STEP, encode_evt2, encode_evt3

Events = npt.NDArray[np.void]
TONIC_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("p", "<i8"), ("t", "<i8")])
"""Field order and types of tonic's cached event arrays."""


def _columns(events: Events, *, max_x: int, max_y: int, what: str) -> tuple[npt.NDArray[np.int64], ...]:
    if events.dtype != EVENT_DTYPE:
        msg = f"{what}: events must have EVENT_DTYPE, got {events.dtype}"
        raise ValueError(msg)
    t, x, y = (events[f].astype(np.int64) for f in ("t", "x", "y"))
    p = events["p"].astype(np.int64)
    if t.size and (int(t[0]) < 0 or bool((np.diff(t) < 0).any())):
        msg = f"{what}: timestamps must be >= 0 and sorted"
        raise ValueError(msg)
    if x.size and (int(x.max()) > max_x or int(y.max()) > max_y):
        msg = f"{what}: x/y above the format's {max_x}/{max_y}"
        raise ValueError(msg)
    return t, x, y, p


def _max_gap_steps(t: npt.NDArray[np.int64], step: int) -> int:
    return int((np.diff(t) // step).sum()) if t.size > 1 else 0


def _check_gaps(t: npt.NDArray[np.int64], limit: int, what: str) -> None:
    if t.size > 1 and int(np.diff(t).max()) >= limit:
        msg = f"{what}: a gap of {limit} µs or more between events would hide a timestamp wrap"
        raise ValueError(msg)


def _header(lines: Sequence[str], eol: str = "\n") -> bytes:
    return "".join(line + eol for line in lines).encode("latin-1")


def write_evt2(
    path: Path,
    events: Events,
    *,
    width: int = 640,
    height: int = 480,
    header: Sequence[str] | None = None,
    time_high_every: int = 0,
    trigger_every: int = 0,
) -> int:
    """Prophesee EVT 2.0 ``.raw``; ``time_high_every`` repeats TIME_HIGH, ``trigger_every`` adds EXT_TRIGGER words.

    Returns the number of 32-bit words written.
    """
    t, x, y, p = _columns(events, max_x=2047, max_y=2047, what="EVT2")
    size = 3 * t.size + _max_gap_steps(t, int(EVT2_HIGH_STEP)) + 1
    words = np.empty(size, np.uint32)
    count = encode_evt2(t, x, y, p, time_high_every, trigger_every, words)
    lines = header if header is not None else ["% evt 2.0", f"% format EVT2;height={height};width={width}", "% end"]
    with path.open("wb") as f:
        f.write(_header(lines))
        f.write(words[:count].astype("<u4").tobytes())
    return count


def write_evt3(
    path: Path,
    events: Events,
    *,
    width: int = 1280,
    height: int = 720,
    header: Sequence[str] | None = None,
    vectorize: bool = True,
    time_high_every: int = 0,
    trigger_every: int = 0,
) -> int:
    """Prophesee EVT 3.0 ``.raw``; runs of same-row events become VECT_BASE_X + VECT_12/VECT_8 words.

    Returns the number of 16-bit words written.
    """
    t, x, y, p = _columns(events, max_x=2047, max_y=2047, what="EVT3")
    size = 5 * t.size + _max_gap_steps(t, int(EVT3_HIGH_STEP)) + 1
    words = np.empty(size, np.uint16)
    count = encode_evt3(t, x, y, p, vectorize, time_high_every, trigger_every, words)
    lines = header if header is not None else ["% evt 3.0", f"% format EVT3;height={height};width={width}", "% end"]
    with path.open("wb") as f:
        f.write(_header(lines))
        f.write(words[:count].astype("<u2").tobytes())
    return count


def write_dat(
    path: Path, events: Events, *, width: int | None = 304, height: int | None = 240, event_type: int = 0x0C
) -> None:
    """Prophesee DAT v2 CD file (8-byte events, 32-bit timestamps written modulo 2**32)."""
    t, x, y, p = _columns(events, max_x=0x3FFF, max_y=0x3FFF, what="DAT")
    _check_gaps(t, 1 << 31, "DAT")
    lines = ["% Data file containing EventCD events.", "% Version 2", "% Date 2024-01-01 00:00:00"]
    if width is not None and height is not None:
        lines += [f"% Height {height}", f"% Width {width}"]
    records = np.empty((t.size, 2), "<u4")
    records[:, 0] = t & 0xFFFFFFFF
    records[:, 1] = x | (y << 14) | (p << 28)
    with path.open("wb") as f:
        f.write(_header(lines))
        f.write(bytes([event_type, 8]))
        f.write(records.tobytes())


def write_nmnist_bin(path: Path, events: Events) -> None:
    """N-MNIST ``.bin``: 5 bytes per event, 23-bit timestamps (no wrap: t must stay below 2**23)."""
    t, x, y, p = _columns(events, max_x=255, max_y=255, what="N-MNIST")
    if t.size and int(t[-1]) >= 1 << 23:
        msg = "N-MNIST: timestamps must be below 2**23 µs"
        raise ValueError(msg)
    records = np.empty((t.size, 5), np.uint8)
    records[:, 0] = x
    records[:, 1] = y
    records[:, 2] = (p << 7) | (t >> 16)
    records[:, 3] = (t >> 8) & 0xFF
    records[:, 4] = t & 0xFF
    path.write_bytes(records.tobytes())


AEDAT2_CHIPS = {
    "davis346": ("eu.seebetter.ini.chips.davis.Davis346red", 345, 259),
    "dvs128": ("ch.unizh.ini.jaer.chip.retina.DVS128", 127, 127),
}


def write_aedat2(path: Path, events: Events, *, chip: str = "davis346", aps_every: int = 0, imu_every: int = 0) -> None:
    """jAER AEDAT 2.0 (DAVIS346 or DVS128 address layout).

    ``aps_every``/``imu_every``: an APS / IMU sample record after every so many DVS events (DAVIS only).
    """
    chip_class, max_x, max_y = AEDAT2_CHIPS[chip]
    t, x, y, p = _columns(events, max_x=max_x, max_y=max_y, what="AEDAT2")
    _check_gaps(t, 1 << 31, "AEDAT2")
    # DAVIS: y bits 22-30, x bits 12-21, polarity bit 11. DVS128: y bits 8-14, x bits 1-7, bit 0 set = OFF.
    addr = (y << 22) | (x << 12) | (p << 11) if chip == "davis346" else (y << 8) | (x << 1) | (1 - p)
    records = np.empty((t.size, 2), np.int64)
    records[:, 0] = addr
    records[:, 1] = t & 0xFFFFFFFF
    at_parts, address_parts = [], []
    for every, address in ((aps_every, 0x80000000 | (5 << 12)), (imu_every, 0x80000C00)):
        if every > 0:
            at_parts.append(np.arange(every, t.size + 1, every))
            address_parts.append(np.full(at_parts[-1].size, address, np.int64))
    if at_parts:  # a sample after every `every` DVS events, stamped with that event's time
        at = np.concatenate(at_parts)
        samples = np.stack([np.concatenate(address_parts), records[at - 1, 1]], axis=1)
        records = np.insert(records, at, samples, axis=0)
    lines = [
        "#!AER-DAT2.0",
        "# This is a raw AE data file - do not edit",
        "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event",
        "# Timestamps tick: 1 us",
        f"# AEChip: {chip_class}",
    ]
    with path.open("wb") as f:
        f.write(_header(lines, "\r\n"))
        f.write(records.astype(">u4").tobytes())


def _aedat31_packet(event_type: int, data: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], overflow: int) -> bytes:
    body = np.empty((data.size, 2), "<u4")
    body[:, 0] = data
    body[:, 1] = ts
    valid = int((data & 1).sum())
    head = np.array([event_type | (1 << 16), 8, 4, overflow, data.size, data.size, valid], "<u4")
    # eventType and eventSource are two int16 sharing the first 32-bit slot (source id 1).
    return head.tobytes() + body.tobytes()


def write_aedat31(
    path: Path,
    events: Events,
    *,
    source: str = "DVS128",
    packet_events: int = 4096,
    invalid_every: int = 0,
    special_every: int = 0,
) -> None:
    """cAER AEDAT 3.1: polarity packets of up to ``packet_events``, split where the 31-bit time overflows.

    ``invalid_every`` adds an invalidated event (valid bit 0) after every so many events; ``special_every``
    inserts a special-event packet (type 0) before every so many polarity packets.
    """
    t, x, y, p = _columns(events, max_x=0x7FFF, max_y=0x7FFF, what="AEDAT3.1")
    data = (x << 17) | (y << 2) | (p << 1) | 1
    ts = t & 0x7FFFFFFF
    overflow = t >> 31
    if invalid_every > 0 and t.size:
        at = np.arange(invalid_every, t.size + 1, invalid_every)
        data = np.insert(data, at, data[at - 1] & ~1)
        ts = np.insert(ts, at, ts[at - 1])
        overflow = np.insert(overflow, at, overflow[at - 1])
    cuts = np.flatnonzero(np.diff(overflow)) + 1
    header = [
        "#!AER-DAT3.1",
        "#Format: RAW",
        f"#Source 1: {source}",
        "#Start-Time: 2024-01-01 00:00:00",
        "#!END-HEADER",
    ]
    with path.open("wb") as f:
        f.write(_header(header, "\r\n"))
        packet = 0
        for segment in np.split(np.arange(data.size), cuts):
            for start in range(0, segment.size, packet_events):
                sel = segment[start : start + packet_events]
                if special_every > 0 and packet % special_every == 0:
                    special_ts = np.full(2, ts[sel[0]])
                    f.write(_aedat31_packet(0, np.array([1, 3], np.int64), special_ts, int(overflow[sel[0]])))
                f.write(_aedat31_packet(1, data[sel], ts[sel], int(overflow[sel[0]])))
                packet += 1


def write_npy(path: Path, events: Events, *, dtype: np.dtype[np.void] | None = None) -> None:
    """numpy ``.npy`` structured array; ``dtype`` picks field order and types (e.g. ``TONIC_DTYPE``)."""
    out = events if dtype is None else np.empty(events.shape, dtype)
    if dtype is not None:
        for name in ("t", "x", "y", "p"):
            out[name] = events[name]
    np.save(path, out)


def write_npz(path: Path, events: Events, *, columns: bool = False, compressed: bool = True) -> None:
    """numpy ``.npz``: one structured array, or arrays ``t``, ``x``, ``y``, ``p`` when ``columns``."""
    save = np.savez_compressed if compressed else np.savez
    if columns:
        save(path, t=events["t"], x=events["x"], y=events["y"], p=events["p"].astype(np.int8))
    else:
        save(path, events=events)


def dvs_like_events(
    n_events: int,
    width: int,
    height: int,
    *,
    rate_hz: float = 1e6,
    seed: int = 0,
    events_per_row: float = 3.0,
    column_step: float = 4.0,
) -> Events:
    """Synthetic events with DVS-like structure, sorted by time.

    A sensor reads events out row by row: each readout has one timestamp, row and polarity and a few events
    (geometric, mean ``events_per_row``) at increasing columns (geometric steps, mean ``column_step``), so
    close columns become EVT 3.0 vectors. Readouts arrive as a Poisson process (``rate_hz`` events/s in
    total) and cluster around an edge sweeping the sensor. With the defaults the EVT 3.0 encoding takes
    about 1.4 words per event, like the Gen4.1 sample in shared/data.
    """
    rng = np.random.default_rng(seed)
    runs = rng.geometric(1.0 / events_per_row, size=int(n_events / events_per_row) + 16).clip(1, 32)
    runs = runs[: int(np.searchsorted(np.cumsum(runs), n_events)) + 1]
    runs[-1] -= int(runs.sum()) - n_events
    runs = runs[runs > 0]
    n_runs = runs.size
    t_run = np.floor(np.cumsum(rng.exponential(1e6 * events_per_row / rate_hz, n_runs))).astype(np.int64)
    edge = (np.arange(n_runs) * 7.0 * width / max(n_runs, 1)) % width  # an edge sweeping the width 7 times
    span = max(width - 1, 1)
    x0 = (edge + rng.normal(0, width / 16, n_runs)).astype(np.int64) % span
    first = np.repeat(np.cumsum(runs) - runs, runs)
    step = rng.geometric(1.0 / column_step, n_events)
    step[first == np.arange(n_events)] = 0
    columns = np.cumsum(step)
    which = np.repeat(np.arange(n_runs), runs)
    events = np.empty(n_events, EVENT_DTYPE)
    events["t"] = t_run[which]
    # Columns past the right border wrap to the left: x stays unique and rising within most readouts.
    events["x"] = (x0[which] + columns - columns[first]) % width
    events["y"] = rng.integers(0, height, n_runs)[which]
    events["p"] = (rng.random(n_runs) < 0.5)[which]
    return events
