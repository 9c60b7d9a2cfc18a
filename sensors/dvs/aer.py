"""Address-event files: N-MNIST/N-Caltech ``.bin`` (ATIS), jAER AEDAT 2.0 and cAER AEDAT 3.1."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from sensors.dvs.aer_kernel import (
    AE2_APS,
    AE2_IMU,
    AE2_LAST_T,
    AE2_LAYOUT,
    AE2_STATE_SIZE,
    AE2_TRIGGER,
    AE3_FRAME,
    AE3_IMU,
    AE3_INVALID,
    AE3_MODE,
    AE3_OTHER,
    AE3_REMAINING,
    AE3_SPECIAL,
    AE3_STATE_SIZE,
    ERR_PACKET,
    ERR_TIMESTAMP,
    LAYOUT_DAVIS,
    LAYOUT_DVS128,
    MODE_HEADER,
    MODE_POLARITY,
    PACKET_FIELDS,
    decode_aedat2,
    decode_aedat31,
    decode_nmnist,
)
from sensors.dvs.eventfile import (
    ERR_X,
    ERR_Y,
    BinaryEventReader,
    EventFileInfo,
    EventFormatError,
    range_problem,
    read_header_lines,
)

NMNIST_SIZE = (34, 34)
# Sensor sizes by substring of the (upper-cased) chip or source name, most specific first.
_INIVATION_SIZES = (
    ("DVXPLORER_LITE", (320, 240)),
    ("DVXPLORER", (640, 480)),
    ("DAVIS346", (346, 260)),
    ("DAVIS240", (240, 180)),
    ("DAVIS640", (640, 480)),
    ("DAVIS208", (208, 192)),
    ("DAVIS128", (128, 128)),
    ("DVS128", (128, 128)),
    ("TMPDIFF128", (128, 128)),
)


def _known_size(name: str) -> tuple[int, int] | None:
    upper = name.upper()
    for key, size in _INIVATION_SIZES:
        if key in upper:
            return size
    return None


def parse_hash_header(lines: list[str]) -> dict[str, str]:
    """``#!AER-DAT<v>`` and ``# Key: value`` lines as a dict (first occurrence wins; prose lines ignored)."""
    header: dict[str, str] = {}
    for line in lines:
        if line.startswith("#!AER-DAT"):
            header.setdefault("version", line[len("#!AER-DAT") :].strip())
            continue
        match = re.match(r"#\s*([A-Za-z][\w .-]{0,40}?)\s*:\s*(.*)$", line)
        if match:
            header.setdefault(match[1], match[2].strip())
    return header


class NmnistReader(BinaryEventReader):
    """N-MNIST / N-Caltech101 ``.bin``: 5-byte events, no header, 23-bit µs timestamps (no wrap)."""

    record_bytes = 5
    record_name = "5-byte event"

    def __init__(
        self, path: Path, *, chunk_events: int, buffer_bytes: int, sensor_size: tuple[int, int] | None
    ) -> None:
        width, height = sensor_size or NMNIST_SIZE
        super().__init__(
            EventFileInfo(path, "nmnist_bin", width, height, {}),
            data_offset=0,
            kernel=decode_nmnist,
            state=np.zeros(1, np.int64),
            skipped_slots={},
            chunk_events=chunk_events,
            buffer_bytes=buffer_bytes,
        )

    def _problem(self, status: int, aux: int) -> str:
        text = super()._problem(status, aux)
        if status in (ERR_X, ERR_Y):
            text += " (N-MNIST is 34x34; N-Caltech101 and other .bin sets are larger)"
        return text


def aedat2_layout(path: Path, header: dict[str, str]) -> tuple[int, tuple[int, int] | None]:
    """Address layout and sensor size from the ``# AEChip:`` line."""
    chip = header.get("AEChip", "")
    if not chip:
        # Files written before jAER added the AEChip line came from the DVS128 (Tmpdiff128) retina.
        return LAYOUT_DVS128, (128, 128)
    name = chip.rsplit(".", 1)[-1].upper()
    if "DVS128" in name or "TMPDIFF128" in name:
        return LAYOUT_DVS128, (128, 128)
    if "DAVIS" in name or "SBRET" in name:
        return LAYOUT_DAVIS, _known_size(name)
    msg = f"AEChip {chip!r} has no known address layout (expected a DVS128 or DAVIS chip)"
    raise EventFormatError(path, 0, msg)


class Aedat2Reader(BinaryEventReader):
    """jAER AEDAT 2.0: big-endian int32 address + int32 timestamp; APS/IMU/trigger records are counted."""

    record_bytes = 8
    record_name = "8-byte AEDAT 2.0 record"

    def __init__(
        self, path: Path, *, chunk_events: int, buffer_bytes: int, sensor_size: tuple[int, int] | None
    ) -> None:
        head = read_header_lines(path, b"#")
        header = parse_hash_header(head.lines)
        layout, size = aedat2_layout(path, header)
        width, height = sensor_size or size or (None, None)
        state = np.zeros(AE2_STATE_SIZE, np.int64)
        state[AE2_LAYOUT] = layout
        state[AE2_LAST_T] = -1
        slots = {"aps_samples": AE2_APS, "imu_samples": AE2_IMU, "ext_trigger": AE2_TRIGGER}
        super().__init__(
            EventFileInfo(path, "aedat2", width, height, header),
            data_offset=head.data_offset,
            kernel=decode_aedat2,
            state=state,
            skipped_slots=slots,
            chunk_events=chunk_events,
            buffer_bytes=buffer_bytes,
        )


class Aedat31Reader(BinaryEventReader):
    """cAER AEDAT 3.1: packets with a 28-byte header; polarity packets decoded, others skipped and counted."""

    record_bytes = 8
    record_name = "8-byte polarity event"

    def __init__(
        self, path: Path, *, chunk_events: int, buffer_bytes: int, sensor_size: tuple[int, int] | None
    ) -> None:
        head = read_header_lines(path, b"#", end_line=b"#!END-HEADER")
        if not head.at_eof and (not head.lines or head.lines[-1] != "#!END-HEADER"):
            msg = "AEDAT 3.1 header does not end with a #!END-HEADER line"
            raise EventFormatError(path, head.data_offset, msg)
        header = parse_hash_header(head.lines)
        if header.get("Format", "RAW").upper() != "RAW":
            msg = f"AEDAT 3.1 Format {header['Format']!r} is not supported (expected RAW)"
            raise EventFormatError(path, 0, msg)
        sources = [value for key, value in header.items() if key.startswith("Source")]
        size = sensor_size or (_known_size(sources[0]) if sources else None)
        width, height = size or (None, None)
        slots = {
            "invalid": AE3_INVALID,
            "special": AE3_SPECIAL,
            "frames": AE3_FRAME,
            "imu_samples": AE3_IMU,
            "other": AE3_OTHER,
        }
        super().__init__(
            EventFileInfo(path, "aedat31", width, height, header),
            data_offset=head.data_offset,
            kernel=decode_aedat31,
            state=np.zeros(AE3_STATE_SIZE, np.int64),
            skipped_slots=slots,
            chunk_events=chunk_events,
            buffer_bytes=buffer_bytes,
        )

    def _check_end(self, left: int) -> None:
        mode = int(self._state[AE3_MODE])
        remaining = int(self._state[AE3_REMAINING])
        if mode == MODE_HEADER and left:
            msg = f"file ends inside a 28-byte packet header ({left} bytes present)"
            raise EventFormatError(self.info.path, self.bytes_read, msg)
        if mode != MODE_HEADER and remaining:
            what = "polarity events" if mode == MODE_POLARITY else "bytes of a skipped packet"
            msg = f"file ends {remaining} {what} before the end of the last packet"
            raise EventFormatError(self.info.path, self.bytes_read + left, msg)

    def _problem(self, status: int, aux: int) -> str:
        if status == ERR_PACKET:
            return f"AEDAT 3.1 packet header has an impossible {PACKET_FIELDS[aux]} (28-byte header expected)"
        if status == ERR_TIMESTAMP:
            return f"AEDAT 3.1 polarity event has a negative timestamp {aux} (expected 0..2**31-1)"
        if status in (ERR_X, ERR_Y):
            return range_problem(status, aux, self.info.width, self.info.height)
        return super()._problem(status, aux)
