"""Fuzzing the pure datagram parsers: ECG SWEC (sensors/ecg/udp.py), radar SWRD fragments and their frame
assembly (sensors/radar/udp_wire.py), DVS UDP (sensors/dvs/udp.py).

A damaged datagram must be refused with the parser's documented error (``DatagramError`` for SWEC/SWRD,
``ValueError`` for DVS, whose receiver counts it) saying what is wrong, never a bare struct.error or
IndexError, and a header's sizes must not be trusted for allocation.
"""

from __future__ import annotations

import functools

import numpy as np
from fuzz_util import FUZZ, guarded, mutated
from hypothesis import given
from hypothesis import strategies as st

from sensors.blocks import EVENT_DTYPE
from sensors.datagram import DatagramError
from sensors.dvs.udp import pack_datagram as pack_dvs
from sensors.dvs.udp import unpack_datagram as unpack_dvs
from sensors.ecg.udp import pack_datagram as pack_ecg
from sensors.ecg.udp import unpack_datagram as unpack_ecg
from sensors.radar.frames import RadarGeometry
from sensors.radar.udp_wire import FrameAssembler, pack_frame, unpack_fragment, wire_samples


@functools.cache
def ecg_seeds() -> tuple[bytes, ...]:
    ints = (np.arange(40, dtype=np.int16).reshape(20, 2) * 7) - 100
    floats = np.linspace(-1, 1, 30, dtype=np.float32).reshape(10, 3)
    return (pack_ecg(1, 0, 250.0, ints, scale=0.005, start=True), pack_ecg(2, 20, 360.0, floats))


@functools.cache
def radar_seeds() -> tuple[tuple[bytes, ...], ...]:
    """Fragments of three frames: complex int16 range cells, float32 IQ with a range table, real uint16."""
    rng = np.random.default_rng(5)
    out = []
    for domain, complex_, table in (("range", True, False), ("range", True, True), ("fmcw_adc", False, False)):
        n_points = 16
        ranges = tuple(0.1 * k + (0.013 * k * k if table else 0.0) for k in range(n_points))
        geometry = RadarGeometry(
            domain, 4, 2, n_points, 10.0, 1000.0,
            range_m=ranges if domain == "range" else None,
            range_resolution_m=0.04 if domain == "fmcw_adc" else None,
            is_complex=complex_,
        )  # fmt: skip
        frame = rng.integers(0, 300, (4, 2, n_points)) + (1j * rng.integers(-300, 300, (4, 2, n_points)))
        if table:
            frame = frame + 0.5
        samples, stype = wire_samples(frame.astype(np.complex64), complex_)
        out.append(tuple(pack_frame(seq=10, frame_index=3, t_us=1000, geometry=geometry, samples=samples,
                                    sample_type=stype, max_datagram_bytes=200, start=True)))  # fmt: skip
    return tuple(out)


@functools.cache
def dvs_seed() -> bytes:
    events = np.zeros(30, EVENT_DTYPE)
    events["t"] = np.arange(30) * 5
    events["x"] = np.arange(30) % 32
    events["y"] = np.arange(30) % 24
    events["p"] = np.arange(30) % 2
    return pack_dvs(7, 32, 24, events)


def test_seeds_parse() -> None:
    assert [unpack_ecg(d).samples_mv().shape for d in ecg_seeds()] == [(20, 2), (10, 3)]
    for fragments in radar_seeds():
        assembler = FrameAssembler()
        results = [assembler.push(unpack_fragment(d)) for d in fragments]
        frame, problem = results[-1]
        assert problem is None and frame is not None
    assert len(unpack_dvs(dvs_seed()).events) == 30


@FUZZ
@given(data=st.data(), which=st.integers(0, 1))
def test_damaged_ecg_datagram(data: st.DataObject, which: int) -> None:
    damaged = data.draw(mutated(ecg_seeds()[which], header_bytes=40))
    guarded("datagram:ecg", lambda: unpack_ecg(damaged), names=None, allowed=(DatagramError,))


def _assemble(fragments: list[bytes]) -> int:
    """Parse and assemble like the receiver does: bad fragments are DatagramErrors or reported problems."""
    assembler = FrameAssembler()
    frames = 0
    for raw in fragments:
        try:
            frag = unpack_fragment(raw)
        except DatagramError:
            continue
        frame, _problem = assembler.push(frag)
        if frame is not None:
            assert frame.samples.shape == frame.geometry.frame_shape
            frames += 1
    return frames


@FUZZ
@given(data=st.data(), which=st.integers(0, 2))
def test_damaged_radar_fragment(data: st.DataObject, which: int) -> None:
    fragments = list(radar_seeds()[which])
    i = data.draw(st.integers(0, len(fragments) - 1))
    damaged = data.draw(mutated(fragments[i], header_bytes=64))
    guarded("datagram:radar", lambda: unpack_fragment(damaged), names=None, allowed=(DatagramError,))
    fragments[i] = damaged
    if data.draw(st.booleans()):  # reorder or drop fragments as a network would
        fragments = data.draw(st.permutations(fragments))[: data.draw(st.integers(1, len(fragments)))]
    guarded("datagram:radar", lambda: _assemble(fragments), names=None, allowed=(DatagramError,))


@FUZZ
@given(data=st.data())
def test_damaged_dvs_datagram(data: st.DataObject) -> None:
    damaged = data.draw(mutated(dvs_seed(), header_bytes=24))
    guarded("datagram:dvs", lambda: unpack_dvs(damaged), names=None, allowed=(ValueError,))


@FUZZ
@given(raw=st.binary(max_size=256))
def test_random_bytes_to_every_parser(raw: bytes) -> None:
    guarded("datagram:ecg", lambda: unpack_ecg(raw), names=None, allowed=(DatagramError,))
    guarded("datagram:radar", lambda: unpack_fragment(raw), names=None, allowed=(DatagramError,))
    guarded("datagram:dvs", lambda: unpack_dvs(raw), names=None, allowed=(ValueError,))
