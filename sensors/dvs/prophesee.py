"""Prophesee recordings: EVT 2.0 and EVT 3.0 ``.raw`` files and DAT (v2) CD files.

All three start with ``%`` text header lines. EVT files may end the header with ``% end``; older files
(like the EVT 2.0 sample) do not, so the header stops at the first line that does not start with ``%``.
"""

from __future__ import annotations

import re
from pathlib import Path

from sensors.dvs.eventfile import (
    NO_LIMIT,
    BinaryEventReader,
    EventFileInfo,
    EventFormatError,
    read_header_lines,
)
from sensors.dvs.prophesee_kernel import (
    DAT_LAST_T,
    DAT_STATE_SIZE,
    ERR_POLARITY,
    ERR_WORD_TYPE,
    EVT2_CONTINUED,
    EVT2_NO_TIME,
    EVT2_OTHERS,
    EVT2_STATE_SIZE,
    EVT2_TIME,
    EVT2_TRIGGER,
    EVT3_CONTINUED,
    EVT3_NO_TIME,
    EVT3_NO_Y,
    EVT3_OTHERS,
    EVT3_STATE_SIZE,
    EVT3_TIME_HIGH,
    EVT3_TRIGGER,
    EVT3_Y,
    decode_dat,
    decode_evt2,
    decode_evt3,
    new_state,
)

# Sensor size by substring of the HAL plugin name, most specific first (Gen3/3.1: VGA, Gen4/IMX636: HD).
_PLUGIN_SIZES = (
    ("genx320", (320, 320)),
    ("gen41", (1280, 720)),
    ("gen4", (1280, 720)),
    ("imx636", (1280, 720)),
    ("gen31", (640, 480)),
    ("gen3", (640, 480)),
)
_GENERATION_SIZES = {"3.0": (640, 480), "3.1": (640, 480), "4.0": (1280, 720), "4.1": (1280, 720), "4.2": (1280, 720)}

_EVT2_TYPES = "0x0 CD_OFF, 0x1 CD_ON, 0x8 TIME_HIGH, 0xA EXT_TRIGGER, 0xE OTHERS, 0xF CONTINUED"
_EVT3_TYPES = (
    "0x0 ADDR_Y, 0x2 ADDR_X, 0x3 VECT_BASE_X, 0x4 VECT_12, 0x5 VECT_8, 0x6 TIME_LOW, 0x7 CONTINUED_4, "
    "0x8 TIME_HIGH, 0xA EXT_TRIGGER, 0xE OTHERS, 0xF CONTINUED_12"
)
DAT_CD_TYPES = (0x00, 0x0C)
"""DAT event types holding 8-byte CD events: 0 (Event2D, older files) and 12 (EventCD)."""


def parse_header(lines: list[str]) -> dict[str, str]:
    """``% key value`` lines as a dict (first occurrence wins)."""
    header: dict[str, str] = {}
    for line in lines:
        text = line[1:].strip()
        if text.startswith("Data file containing"):
            key, value = "Data file containing", text[len("Data file containing") :].strip()
        else:
            key, _, value = text.partition(" ")
        if key:
            header.setdefault(key, value.strip())
    return header


def classify(header: dict[str, str]) -> str | None:
    """ "evt2", "evt3" or "dat" from a ``%`` header, None when it names none of them."""
    evt = header.get("evt", "").strip()
    fmt = header.get("format", "").split(";")[0].strip().upper()
    if evt == "2.0" or fmt == "EVT2":
        return "evt2"
    if evt == "3.0" or fmt == "EVT3":
        return "evt3"
    if evt or fmt:
        return f"unsupported:{evt or fmt}"
    if "Data file containing" in header or "Version" in header:
        return "dat"
    return None


def sensor_size_from_header(header: dict[str, str]) -> tuple[int, int] | None:
    """(width, height) from geometry/format/Width+Height lines or a known sensor; None when unknown."""
    geometry = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", header.get("geometry", ""))
    if geometry:
        return int(geometry[1]), int(geometry[2])
    fields = dict(part.split("=", 1) for part in header.get("format", "").split(";") if "=" in part)
    for width_key, height_key in (("width", "height"), ("Width", "Height")):
        source = fields if width_key in fields else header
        width, height = source.get(width_key, "").strip(), source.get(height_key, "").strip()
        if width.isdigit() and height.isdigit():
            return int(width), int(height)
    generation = _GENERATION_SIZES.get(header.get("sensor_generation", "").strip())
    if generation is not None:
        return generation
    plugin = header.get("plugin_name", "").lower()
    for name, size in _PLUGIN_SIZES:
        if name in plugin:
            return size
    return None


def _info(path: Path, fmt: str, header: dict[str, str], sensor_size: tuple[int, int] | None) -> EventFileInfo:
    size = sensor_size or sensor_size_from_header(header)
    if size is not None and not (size[0] <= NO_LIMIT and size[1] <= NO_LIMIT):
        # A damaged header's digits would reach the numba kernels as an int64 overflow (a bare error).
        problem = f"header sensor size {size[0]}x{size[1]} is larger than {NO_LIMIT}x{NO_LIMIT} pixels"
        raise EventFormatError(path, 0, f"{problem}; pass sensor_size=(width, height) if the header is wrong")
    width, height = size if size is not None else (None, None)
    return EventFileInfo(path, fmt, width, height, header)


class Evt2Reader(BinaryEventReader):
    record_bytes = 4
    record_name = "32-bit EVT2 word"

    def __init__(
        self, path: Path, *, chunk_events: int, buffer_bytes: int, sensor_size: tuple[int, int] | None
    ) -> None:
        head = read_header_lines(path, b"%", end_line=b"% end")
        info = _info(path, "evt2", parse_header(head.lines), sensor_size)
        slots = {
            "before_time_high": EVT2_NO_TIME,
            "ext_trigger": EVT2_TRIGGER,
            "others": EVT2_OTHERS,
            "continued": EVT2_CONTINUED,
        }
        super().__init__(
            info,
            data_offset=head.data_offset,
            kernel=decode_evt2,
            state=new_state(EVT2_STATE_SIZE, (EVT2_TIME,)),
            skipped_slots=slots,
            chunk_events=chunk_events,
            buffer_bytes=buffer_bytes,
        )

    def _problem(self, status: int, aux: int) -> str:
        if status == ERR_WORD_TYPE:
            return f"EVT2 word type {aux:#x} is not defined (expected one of {_EVT2_TYPES})"
        return super()._problem(status, aux)


class Evt3Reader(BinaryEventReader):
    record_bytes = 2
    record_name = "16-bit EVT3 word"

    def __init__(
        self, path: Path, *, chunk_events: int, buffer_bytes: int, sensor_size: tuple[int, int] | None
    ) -> None:
        head = read_header_lines(path, b"%", end_line=b"% end")
        info = _info(path, "evt3", parse_header(head.lines), sensor_size)
        slots = {
            "before_time_high": EVT3_NO_TIME,
            "before_addr_y": EVT3_NO_Y,
            "ext_trigger": EVT3_TRIGGER,
            "others": EVT3_OTHERS,
            "continued": EVT3_CONTINUED,
        }
        super().__init__(
            info,
            data_offset=head.data_offset,
            kernel=decode_evt3,
            state=new_state(EVT3_STATE_SIZE, (EVT3_Y, EVT3_TIME_HIGH)),
            skipped_slots=slots,
            chunk_events=chunk_events,
            buffer_bytes=buffer_bytes,
        )

    def _problem(self, status: int, aux: int) -> str:
        if status == ERR_WORD_TYPE:
            return f"EVT3 word type {aux:#x} is not defined (expected one of {_EVT3_TYPES})"
        return super()._problem(status, aux)


class DatReader(BinaryEventReader):
    record_bytes = 8
    record_name = "8-byte DAT event"

    def __init__(
        self, path: Path, *, chunk_events: int, buffer_bytes: int, sensor_size: tuple[int, int] | None
    ) -> None:
        head = read_header_lines(path, b"%")
        info = _info(path, "dat", parse_header(head.lines), sensor_size)
        with path.open("rb") as f:
            f.seek(head.data_offset)
            type_size = f.read(2)
        if len(type_size) == 1:
            msg = "file ends inside the 2-byte event type/size field after the header"
            raise EventFormatError(path, head.data_offset, msg)
        if len(type_size) == 2 and (type_size[0] not in DAT_CD_TYPES or type_size[1] != 8):
            msg = (
                f"DAT event type {type_size[0]} with event size {type_size[1]} is not a CD event stream "
                f"(expected type 0 or 12 and size 8)"
            )
            raise EventFormatError(path, head.data_offset, msg)
        super().__init__(
            info,
            data_offset=head.data_offset + len(type_size),
            kernel=decode_dat,
            state=new_state(DAT_STATE_SIZE, (DAT_LAST_T,)),
            skipped_slots={},
            chunk_events=chunk_events,
            buffer_bytes=buffer_bytes,
        )

    def _problem(self, status: int, aux: int) -> str:
        if status == ERR_POLARITY:
            return f"DAT polarity {aux} is not a CD polarity (expected 0 or 1 in bits 28-31)"
        return super()._problem(status, aux)
