"""Helpers for the replay report and worker tests."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

WALL_CLOCK = {"wall_s", "rtf", "latency_ms", "events_read_per_s_wall", "chip_input_events_per_s_wall"}
"""Summary fields measured on the wall clock: they differ from run to run and between worker counts."""


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, after checking its signature and that matplotlib can decode it."""
    import matplotlib.image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    pixels = matplotlib.image.imread(str(path))
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0.01, f"{path} is blank"
    return width, height


def assert_readable_png(path: Path) -> None:
    w, h = png_size(path)
    assert 400 <= w <= 3000 and 250 <= h <= 2500, f"{path.name}: {w}x{h} px"
    assert path.stat().st_size > 8_000, f"{path.name}: only {path.stat().st_size} bytes"


def deterministic(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in WALL_CLOCK}


def fsdd_files(data_dir: Path, n: int) -> list[Path]:
    """``n`` FSDD recordings spread over digits and speakers, in name order."""
    files = sorted((data_dir / "audio" / "fsdd").glob("*.wav"))
    step = max(1, len(files) // n)
    return files[::step][:n]


def short_record(src: Path, dst_dir: Path, seconds: float) -> Path:
    """The first ``seconds`` of a WFDB record and its beat annotations, written under ``dst_dir``."""
    import wfdb

    n = int(seconds * wfdb.rdheader(str(src)).fs)
    rec = wfdb.rdrecord(str(src), sampto=n, physical=False)
    dst_dir.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(
        src.name, fs=rec.fs, units=rec.units, sig_name=rec.sig_name, d_signal=rec.d_signal, fmt=rec.fmt,
        adc_gain=rec.adc_gain, baseline=rec.baseline, write_dir=str(dst_dir),
    )  # fmt: skip
    ann = wfdb.rdann(str(src), "atr", sampto=n)
    wfdb.wrann(src.name, "atr", ann.sample, ann.symbol, write_dir=str(dst_dir), fs=rec.fs)
    return dst_dir / src.name
