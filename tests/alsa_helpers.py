"""A real ALSA capture device fed from a recording, for tests of the PortAudio path.

ALSA's ``file`` PCM plugin over a ``null`` slave is an input device to PortAudio like any
sound card's, but its samples come from ``infile`` (raw PCM in whatever format, rate and
channel count the application asks for: the null slave accepts them all). Facts the tests
rely on (alsa-lib 1.2.8, PortAudio 19.6, Debian bookworm; all in ``libasound2`` itself, no
plugin package needed):

- ``ALSA_CONFIG_PATH`` replaces the top-level configuration, so the file includes the system
  ``alsa.conf`` first (a file with only the device makes PortAudio abort at start).
- The ``file`` plugin needs an output ``file`` too; ``/dev/null`` takes it.
- The null slave has no clock: capture runs as fast as the reader. With a regular ``infile``
  the whole recording arrives at once, then (at the end of the file, or on a read error,
  which alsa-lib only logs) zeros, endlessly and at full speed: nothing ever ends the stream.
  So ``infile`` here is a FIFO: capture delivers exactly what the test writes, in order,
  and waits when the test writes nothing.
- PortAudio opens every device when it starts (to list it), and opening a FIFO for reading
  blocks until it has a writer: the test opens the FIFO read-write (which never blocks, and
  keeps a writer) before anything opens the device, and keeps it open until the capturing
  process has stopped (PortAudio's stop waits for its read to return).
"""

from __future__ import annotations

import contextlib
import ctypes.util
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf

DEVICE = "spikewire_mic"
SYSTEM_ALSA_CONF = Path("/usr/share/alsa/alsa.conf")


def require_alsa() -> None:
    """Skip without ALSA's configuration (libasound2-data) or PortAudio; fail instead on CI, which has them."""
    missing = ""
    if not SYSTEM_ALSA_CONF.is_file():
        missing = f"{SYSTEM_ALSA_CONF} not found (apt-get install libasound2)"
    elif ctypes.util.find_library("portaudio") is None:
        missing = "PortAudio not found (apt-get install libportaudio2)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(missing)
        pytest.skip(missing)


def write_alsa_config(folder: Path, infile: Path, device: str = DEVICE) -> Path:
    """An ALSA configuration with one capture device whose samples are read from ``infile``."""
    conf = folder / "asound.conf"
    conf.write_text(
        f"""<{SYSTEM_ALSA_CONF}>

pcm.{device} {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{infile}"
    format "raw"
}}
"""
    )
    return conf


def alsa_env(conf: Path) -> dict[str, str]:
    """Environment for a process that must see the device (PortAudio reads it when it starts)."""
    return {"ALSA_CONFIG_PATH": str(conf)}


def s16_recording(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    """The recording's first channel as 16-bit samples, and its rate."""
    data, rate_hz = sf.read(path, dtype="int16", always_2d=True)
    return np.ascontiguousarray(data[:, 0]), int(rate_hz)


class FifoFeeder:
    """Feeds a FIFO read by the ALSA ``file`` device: the samples, then silence at real time.

    The silence keeps the device delivering as a microphone in a quiet room does (so the
    pipeline sees the last word end); without it capture would wait for data.
    """

    def __init__(self, fifo: Path, samples: npt.NDArray[np.int16], rate_hz: int, chunk_ms: float = 20.0) -> None:
        self.fifo = fifo
        self.samples = samples
        self.rate_hz = rate_hz
        self.chunk = max(1, round(rate_hz * chunk_ms / 1000.0))
        self.fd = -1
        self.written_samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        """Create the FIFO and hold it open read-write, so that opening the device never blocks."""
        if not self.fifo.exists():
            os.mkfifo(self.fifo)
        self.fd = os.open(self.fifo, os.O_RDWR)
        # Seen once on a loaded machine with the default 64 KB pipe: from sample 34048 on, the
        # captured samples were shifted (capture caught up with the feeder thread mid-period;
        # likely a short read the file plugin does not retry). A 1 MB pipe (Linux's default
        # ceiling) holds a whole test recording, so the feeder stays ahead.
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.fd, fcntl.F_SETPIPE_SZ, 1 << 20)

    def start(self) -> None:
        if self.fd < 0:
            self.open()
        self._thread = threading.Thread(target=self._run, name="fifo-feeder", daemon=True)
        self._thread.start()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            view = view[os.write(self.fd, view) :]

    def _run(self) -> None:
        # The recording as fast as capture reads it (the write blocks when the FIFO is full) ...
        data = self.samples.astype("<i2").tobytes()
        step = 2 * self.chunk * 50
        for i in range(0, len(data), step):
            self._write(data[i : i + step])
        self.written_samples = self.samples.size
        # ... then silence, paced like a real device.
        silence = bytes(2 * self.chunk)
        period_s = self.chunk / self.rate_hz
        next_t = time.monotonic()
        while not self._stop.is_set():
            self._write(silence)
            next_t += period_s
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def close(self) -> None:
        """Stop writing and close: a reader still blocked on the FIFO gets end-of-file."""
        self._stop.set()
        if self._thread is not None and self.fd >= 0:
            # The writer may be blocked on a full FIFO nobody reads any more: drain it.
            drain = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
            try:
                while self._thread.is_alive():
                    with contextlib.suppress(BlockingIOError):
                        os.read(drain, 1 << 16)
                    self._thread.join(timeout=0.01)
            finally:
                os.close(drain)
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1


@contextlib.contextmanager
def feeding(fifo: Path, samples: npt.NDArray[np.int16], rate_hz: int) -> Iterator[FifoFeeder]:
    feeder = FifoFeeder(fifo, samples, rate_hz)
    try:
        yield feeder
    finally:
        feeder.close()
