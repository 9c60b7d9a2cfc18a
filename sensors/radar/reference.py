"""Pseudo-labels for radar recordings: what Acconeer's reference detectors said, frame by frame.

These are NOT ground truth. Acconeer's exploration tool ships, next to its test recordings,
the per-frame outputs of its own reference algorithms (``expected_output/<recording>*.h5``).
A window of a recording counts as showing its scenario only when the reference detector
confirms that scenario in at least half of the window's frames:

* presence recordings: ``presence_detected`` is True;
* hand-motion recordings: the app is in hand-motion mode (``app_mode`` 1) and its
  ``detection_state`` is detection (1) or retention (2); 0 is no detection, 3 the
  presence-mode state;
* breathing recordings: ``app_state`` is 4, the state in which the app estimates a
  breathing rate (1 and 3 are its start-up and distance-finding states).

The scenario of a recording comes from its label (``labels.csv``), matched against the
model's ``label_patterns`` (regular expressions, case-insensitive, first match wins).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensors.blocks import InputError

REFERENCE_DIR = "expected_output"


@dataclass(frozen=True)
class Reference:
    """Per-frame confirmation of a recording's scenario by the reference detector."""

    path: Path
    scenario: str
    confirmed: npt.NDArray[np.bool_]
    """One entry per frame of the recording, in order (all sessions)."""


def scenario_of(label: str | None, patterns: Mapping[str, str]) -> str | None:
    """The class a recording's label names, by the first pattern that matches; None if none does."""
    if label is None:
        return None
    for cls, pattern in patterns.items():
        if re.search(pattern, label, flags=re.IGNORECASE):
            return cls
    return None


def reference_path(recording: Path) -> Path | None:
    """``../expected_output/<stem>[-<algorithm>].h5`` beside a recording's folder, if there is one.

    ``breathing-sitting`` has ``breathing-sitting-controller.h5`` while
    ``breathing-sitting-no-presence-controller.h5`` belongs to another recording: the
    shortest name that starts with the stem and a ``-`` is the recording's own.
    """
    folder = recording.parent.parent / REFERENCE_DIR
    if not folder.is_dir():
        return None
    stem = recording.stem
    found = [p for p in folder.glob(f"{stem}*.h5") if p.stem == stem or p.stem.startswith(f"{stem}-")]
    return min(found, key=lambda p: (len(p.stem), p.name)) if found else None


def confirmed_frames(path: Path, scenario: str) -> npt.NDArray[np.bool_]:
    """Frames in which the reference output at ``path`` confirms ``scenario``."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if scenario == "presence" and "presence_detected" in f:
                return np.asarray(f["presence_detected"][()], dtype=bool)
            if scenario == "hand_motion" and "app_mode" in f and "detection_state" in f:
                mode, state = f["app_mode"][()], f["detection_state"][()]
                return np.asarray((mode == 1) & ((state == 1) | (state == 2)), dtype=bool)
            if scenario == "breathing" and "app_state" in f:
                return np.asarray(f["app_state"][()] == 4, dtype=bool)
    except OSError as exc:
        msg = f"{path}: not a readable reference (HDF5) file: {exc}"
        raise InputError(msg) from exc
    msg = f"{path}: holds no reference output for scenario {scenario!r}"
    raise InputError(msg)


def load_reference(recording: Path, label: str | None, patterns: Mapping[str, str]) -> Reference | None:
    """The recording's pseudo-labels, or None when its label names no class or no reference file exists."""
    scenario = scenario_of(label, patterns)
    ref = reference_path(recording)
    if scenario is None or ref is None:
        return None
    return Reference(ref, scenario, confirmed_frames(ref, scenario))


def window_truth(reference: Reference, frame_t_us: npt.NDArray[np.int64], start_us: int, end_us: int) -> str | None:
    """The scenario if the reference confirms it in at least half of the window's frames, else None."""
    if len(frame_t_us) != len(reference.confirmed):
        msg = f"{reference.path}: {len(reference.confirmed)} reference rows for a recording of {len(frame_t_us)} frames"
        raise InputError(msg)
    inside = (frame_t_us >= start_us) & (frame_t_us < end_us)
    n = int(inside.sum())
    if n == 0:
        return None
    return reference.scenario if 2 * int(reference.confirmed[inside].sum()) >= n else None
