"""ECG: recordings (WFDB, EDF/EDF+, CSV), live streams (serial, UDP), and the spike encoder.

Modules, by layer:

* readers: ``records`` (whole WFDB/CSV records), ``annotations`` (WFDB beat labels), ``edf``,
  ``reader`` (any of them in chunks, constant memory);
* sources (async iterables of ``SampleBlock``): ``source`` (file replay), ``serial``, ``udp``;
  their settings in ``file_config`` and ``live_config``, which load without numba or wfdb;
* encoder: ``encoder_config``, ``encode`` (band-pass + level crossing), ``encode_kernel``.

Names are re-exported lazily: ``import sensors.ecg.file_config`` (configuration loading) must
not pay for wfdb's import of pandas.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BEAT_SYMBOLS": "sensors.ecg.annotations",
    "Annotations": "sensors.ecg.annotations",
    "read_annotations": "sensors.ecg.annotations",
    "SUPPORTED_FORMATS": "sensors.ecg.records",
    "EcgRecord": "sensors.ecg.records",
    "read_csv_signal": "sensors.ecg.records",
    "read_wfdb": "sensors.ecg.records",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module 'sensors.ecg' has no attribute {name!r}"
        raise AttributeError(msg)
    return getattr(importlib.import_module(module), name)
