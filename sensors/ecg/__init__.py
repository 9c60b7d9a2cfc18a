"""ECG sources: WFDB records and annotations, CSV signals.

Readers only load whole records into memory (a 30-minute MIT-BIH record is 650,000 x 2
samples, about 5 MB as float32); streaming in blocks is built on top of them.
"""

from sensors.ecg.annotations import BEAT_SYMBOLS, Annotations, read_annotations
from sensors.ecg.records import SUPPORTED_FORMATS, EcgRecord, read_csv_signal, read_wfdb

__all__ = [
    "BEAT_SYMBOLS",
    "SUPPORTED_FORMATS",
    "Annotations",
    "EcgRecord",
    "read_annotations",
    "read_csv_signal",
    "read_wfdb",
]
