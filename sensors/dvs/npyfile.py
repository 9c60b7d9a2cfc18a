"""numpy event files: ``.npy`` structured arrays (memory-mapped) and ``.npz`` archives (streamed members).

Fields ``t``, ``x``, ``y``, ``p`` may have any integer or bool type and any order (tonic caches store
``x, y, p, t`` as int64); other fields are ignored. Polarity is ON when ``p > 0`` (so 0/1 and -1/+1 both
work). An ``.npz`` holds either one structured array or four arrays named ``t``, ``x``, ``y``, ``p``; its
members are read from the zip stream chunk by chunk, so compressed archives stay constant-memory too.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from sensors.blocks import EVENT_DTYPE
from sensors.dvs.eventfile import NO_LIMIT, EventFileInfo, EventFormatError, EventReader, Events

FIELDS = ("t", "x", "y", "p")
_INT64_MAX = np.iinfo(np.int64).max


def _bad(path: Path, offset: int | None, problem: str) -> EventFormatError:
    return EventFormatError(path, offset, problem)


def _check_dtype(path: Path, dtype: np.dtype[Any], shape: tuple[int, ...], what: str) -> None:
    names = dtype.names or ()
    missing = [f for f in FIELDS if f not in names]
    if len(shape) != 1 or missing:
        msg = f"{what} has dtype {dtype} and shape {shape} (expected a 1-D structured array with fields t, x, y, p)"
        raise _bad(path, 0, msg)
    for name in FIELDS:
        field_dtype = dtype.fields[name][0] if dtype.fields else dtype
        if field_dtype.kind not in "iub":
            msg = f"{what} field {name!r} has type {field_dtype} (expected an integer or bool type)"
            raise _bad(path, 0, msg)


class _MemberStream:
    """One ``.npy`` member of a zip archive, read sequentially."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, name: str) -> None:
        self.name = name
        try:  # any failure of the zip/npy parsers on this member means the file is bad, whatever its type
            self._fp: IO[bytes] = archive.open(name)
            version = np.lib.format.read_magic(self._fp)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(self._fp)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(self._fp)
        except Exception as exc:
            msg = f"npz member {name!r} is not a readable .npy array ({type(exc).__name__}: {exc})"
            raise _bad(path, None, msg) from exc
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype: np.dtype[Any] = dtype
        self.length = int(shape[0]) if len(shape) == 1 else -1

    def read(self, path: Path, count: int, start: int) -> npt.NDArray[Any]:
        want = count * self.dtype.itemsize
        try:  # zlib.error, BadZipFile (CRC), OSError, EOFError...: a damaged archive either way
            data = self._fp.read(want)
        except Exception as exc:
            msg = f"npz member {self.name!r} could not be read at record {start} ({type(exc).__name__}: {exc})"
            raise _bad(path, None, msg) from exc
        if len(data) != want:
            msg = f"npz member {self.name!r} ends at record {start + len(data) // self.dtype.itemsize} of {self.length}"
            raise _bad(path, None, msg)
        return np.frombuffer(data, self.dtype)

    def close(self) -> None:
        self._fp.close()


class NpyReader(EventReader):
    def __init__(self, path: Path, *, chunk_events: int, sensor_size: tuple[int, int] | None) -> None:
        width, height = sensor_size or (None, None)
        self._mmap: np.memmap[Any, Any] | None = None
        self._archive: zipfile.ZipFile | None = None
        self._members: dict[str, _MemberStream] = {}
        with path.open("rb") as f:
            is_zip = f.read(4) == b"PK\x03\x04"
        header = self._open_npz(path) if is_zip else self._open_npy(path)
        super().__init__(EventFileInfo(path, "npy", width, height, header), chunk_events)
        self._next = 0

    def _open_npy(self, path: Path) -> dict[str, str]:
        try:  # numpy's header parser raises ValueError, SyntaxError, TypeError, OSError... on garbage
            self._mmap = np.lib.format.open_memmap(path, mode="r")
        except Exception as exc:
            raise _bad(path, 0, f"not a readable .npy array ({type(exc).__name__}: {exc})") from exc
        _check_dtype(path, self._mmap.dtype, self._mmap.shape, "array")
        self._length = int(self._mmap.shape[0])
        self._data_offset, self._record_bytes = int(self._mmap.offset), self._mmap.dtype.itemsize
        return {"dtype": str(self._mmap.dtype), "shape": str(self._mmap.shape)}

    def _open_npz(self, path: Path) -> dict[str, str]:
        try:  # the zip directory parser raises BadZipFile, OSError, ValueError, UnicodeDecodeError... on garbage
            self._archive = zipfile.ZipFile(path)
            names = [n for n in self._archive.namelist() if n.endswith(".npy")]
        except Exception as exc:
            raise _bad(path, 0, f"not a readable .npz archive ({type(exc).__name__}: {exc})") from exc
        if {f"{f}.npy" for f in FIELDS} <= set(names):
            self._members = {f: _MemberStream(path, self._archive, f"{f}.npy") for f in FIELDS}
            for field, member in self._members.items():
                if member.length < 0 or member.dtype.kind not in "iub" or member.dtype.names:
                    msg = f"npz array {field!r} has dtype {member.dtype}, shape {member.shape} (expected 1-D integers)"
                    raise _bad(path, None, msg)
            lengths = {m.length for m in self._members.values()}
            if len(lengths) != 1:
                raise _bad(path, None, f"npz arrays t, x, y, p have different lengths {sorted(lengths)}")
        elif len(names) == 1:
            member = _MemberStream(path, self._archive, names[0])
            _check_dtype(path, member.dtype, member.shape, f"npz member {names[0]!r}")
            self._members = {"": member}
        else:
            msg = f"npz holds {names} (expected one structured array, or arrays named t, x, y, p)"
            raise _bad(path, 0, msg)
        self._length = next(iter(self._members.values())).length
        self._data_offset, self._record_bytes = 0, sum(m.dtype.itemsize for m in self._members.values())
        return {"members": ",".join(m.name for m in self._members.values()), "shape": f"({self._length},)"}

    @property
    def bytes_read(self) -> int:
        """Bytes of array data consumed (uncompressed for .npz), plus the header for .npy."""
        return self._data_offset + self._next * self._record_bytes

    def _release(self) -> None:
        self._mmap = None
        for member in self._members.values():
            member.close()
        if self._archive is not None:
            self._archive.close()

    def _columns(self, count: int) -> dict[str, npt.NDArray[Any]]:
        start = self._next
        if self._mmap is not None:
            block = self._mmap[start : start + count]
            return {f: block[f] for f in FIELDS}
        if "" in self._members:
            block = self._members[""].read(self.info.path, count, start)
            return {f: block[f] for f in FIELDS}
        return {f: self._members[f].read(self.info.path, count, start) for f in FIELDS}

    def _read_chunk(self) -> Events | None:
        count = min(self._chunk_events, self._length - self._next)
        if count <= 0:
            return None
        cols = self._columns(count)
        self._validate(cols)
        out = np.empty(count, EVENT_DTYPE)
        out["t"] = cols["t"]
        out["x"] = cols["x"]
        out["y"] = cols["y"]
        out["p"] = cols["p"] > 0
        self._next += count
        return out

    def _validate(self, cols: dict[str, npt.NDArray[Any]]) -> None:
        checks: list[tuple[str, npt.NDArray[np.bool_] | None, str]] = [
            ("t", cols["t"] > _INT64_MAX if cols["t"].dtype.kind == "u" else None, "t above 2**63-1"),
            ("p", (cols["p"] < -1) | (cols["p"] > 1) if cols["p"].dtype.kind != "b" else None, "p not in -1, 0, 1"),
        ]
        for axis, bound in (("x", self.info.width), ("y", self.info.height)):
            limit = bound if bound is not None else NO_LIMIT
            values = cols[axis]
            outside = (values >= limit) if values.dtype.kind in "ub" else (values < 0) | (values >= limit)
            checks.append((axis, outside, f"{axis} outside 0..{limit - 1}" + (" (sensor size)" if bound else "")))
        for field, bad, problem in checks:
            if bad is not None and bool(bad.any()):
                index = self._next + int(np.flatnonzero(bad)[0])
                value = cols[field][index - self._next]
                offset = self._data_offset + index * self._record_bytes if self._mmap is not None else None
                raise _bad(self.info.path, offset, f"record {index}: {field}={value}: {problem}")
