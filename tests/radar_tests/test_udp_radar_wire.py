"""SWRD datagrams without sockets: layout, fragmentation, every kind of bad datagram, frame reassembly."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from radar_udp_util import UNEVEN_M, chunk, fmcw_geometry, iq_frames, range_geometry, uneven_geometry

from sensors.datagram import DatagramError
from sensors.radar.frames import RadarGeometry
from sensors.radar.udp_wire import (
    SWRD,
    FrameAssembler,
    SampleType,
    pack_frame,
    unpack_fragment,
    wire_samples,
)


def datagrams(geometry: RadarGeometry, frame: np.ndarray, *, seq: int = 0, index: int = 0, t_us: int = 0,
              max_bytes: int = 1472, start: bool = False) -> list[bytes]:  # fmt: skip
    samples, stype = wire_samples(frame[None], geometry.is_complex)
    return pack_frame(
        seq=seq, frame_index=index, t_us=t_us, geometry=geometry, samples=samples[0], sample_type=stype,
        max_datagram_bytes=max_bytes, start=start,
    )  # fmt: skip


def assemble(dgs: list[bytes], asm: FrameAssembler | None = None) -> list[np.ndarray]:
    asm = asm or FrameAssembler()
    out = []
    for dg in dgs:
        frame, problem = asm.push(unpack_fragment(dg))
        assert problem is None
        if frame is not None:
            out.append(frame)
    return out


def test_header_layout_is_the_documented_one() -> None:
    g = range_geometry(n_sweeps=2, n_points=3)
    frame = iq_frames(g, 1)[0]
    (dg,) = datagrams(g, frame, seq=7, index=5, t_us=123_456, start=True)
    assert SWRD.size == 56
    fields = struct.unpack_from("<4sBBHIQIHHIHHBBHIIiI", dg)
    assert fields == (b"SWRD", 1, 1, 1, 7, 123_456, 5, 0, 1, 0, 2, 3, 0, 0, 0, 20_000, 1_000_000, 200_000, 2_500)
    iq = np.frombuffer(dg, "<i2", offset=56).reshape(2, 1, 3, 2)  # sweep, channel, point, (I, Q)
    assert np.array_equal(iq[..., 0], frame.real) and np.array_equal(iq[..., 1], frame.imag)


def test_one_datagram_frame_round_trip() -> None:
    g = range_geometry(n_sweeps=8)  # 8 x 1 x 40 x 4 bytes: one datagram
    frame = iq_frames(g, 1, seed=3)[0]
    dgs = datagrams(g, frame, index=9, t_us=50_000)
    assert len(dgs) == 1
    (got,) = assemble(dgs)
    assert np.array_equal(got.samples, frame)
    assert got.header.frame_index == 9 and got.header.t_us == 50_000
    assert got.geometry.frame_shape == g.frame_shape and got.geometry.domain == "range"
    assert got.geometry.frame_rate_hz == 20.0 and got.geometry.sweep_rate_hz == 1000.0
    assert got.geometry.range_m is not None and g.range_m is not None
    assert np.allclose(got.geometry.range_m, g.range_m, atol=1e-6)


def test_fragmented_frame_with_uneven_ranges_round_trip() -> None:
    g = uneven_geometry()
    frame = iq_frames(g, 1, seed=4)[0]  # 16 x 1 x 11 x 4 bytes = 704 bytes
    dgs = datagrams(g, frame, max_bytes=200)
    frags = [unpack_fragment(d) for d in dgs]
    assert len(dgs) > 4 and all(len(d) <= 200 for d in dgs)
    assert [f.index for f in frags] == list(range(len(dgs))) and {f.frame.fragment_count for f in frags} == {len(dgs)}
    assert frags[0].ranges_um is not None and all(f.ranges_um is None for f in frags[1:])
    assert all(len(f.data) % 4 == 0 for f in frags)  # whole IQ samples in every fragment
    (got,) = assemble(dgs)
    assert np.array_equal(got.samples, frame)
    assert got.geometry.range_m == pytest.approx(UNEVEN_M, abs=1e-6)


@pytest.mark.parametrize(
    ("frames", "is_complex", "stype"),
    [
        (np.array([[1.5 + 2j, -3 - 0.25j]]), True, SampleType.FLOAT32_IQ),
        (np.array([[40000 + 0j, 1 + 1j]]), True, SampleType.FLOAT32_IQ),  # beyond int16
        (np.array([[65535 + 0j, 0j]]), False, SampleType.UINT16_REAL),
        (np.array([[-1 + 0j, 2.5 + 0j]]), False, SampleType.FLOAT32_REAL),
    ],
)
def test_sample_types_round_trip(frames: np.ndarray, is_complex: bool, stype: SampleType) -> None:
    g = RadarGeometry("range", 1, 1, 2, 5.0, range_m=(0.1, 0.2), is_complex=is_complex)
    frame = frames.astype(np.complex64).reshape(1, 1, 2)
    samples, got_type = wire_samples(frame[None], is_complex)
    assert got_type is stype
    (got,) = assemble(pack_frame(seq=0, frame_index=0, t_us=0, geometry=g, samples=samples[0], sample_type=stype))
    assert np.array_equal(got.samples, frame)
    assert got.geometry.is_complex is is_complex


def test_fmcw_geometry_round_trip_is_fragmented() -> None:
    g = fmcw_geometry()
    c = chunk(g, 1, seed=5)
    dgs = datagrams(g, c.frames[0])
    assert len(dgs) == -(-8 * 4 * 64 * 4 // ((1472 - 56) // 4 * 4))
    (got,) = assemble(dgs)
    assert got.geometry.domain == "fmcw_adc" and got.geometry.range_resolution_m == pytest.approx(0.0439)
    assert np.array_equal(got.samples, c.frames[0])


def _good() -> bytes:
    g = range_geometry(n_sweeps=2, n_points=4)
    return datagrams(g, iq_frames(g, 1)[0])[0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[:30], "shorter than the 56-byte header"),
        (lambda d: b"SWEC" + d[4:], "magic b'SWEC' is not b'SWRD'"),
        (lambda d: d[:4] + b"\x02" + d[5:], "version 2 is not 1"),
        (lambda d: d[:-4], "the payload does not match the geometry"),
        (lambda d: d + b"\0\0\0\0", "the payload does not match the geometry"),
        (lambda d: d[:56], "the payload does not match the geometry"),
        (lambda d: d[:36] + b"\x09" + d[37:], "sample type 9 is not one of"),
        (lambda d: d[:37] + b"\x05" + d[38:], "domain 5 is not 0 (range) or 1 (fmcw_adc)"),
        (lambda d: d[:24] + struct.pack("<HH", 3, 2) + d[28:], "fragment 3 of 2"),
        (lambda d: d[:6] + b"\0\0" + d[8:], "has an empty axis"),
        (lambda d: d[:40] + b"\0\0\0\0" + d[44:], "frame_rate_mhz is 0"),
        (lambda d: d[:32] + struct.pack("<HH", 0xFFFF, 0xFFFF) + d[36:], "exceeds the limit of"),
    ],
)
def test_bad_datagrams_say_what_is_wrong(mutate: object, message: str) -> None:
    data = mutate(_good())  # type: ignore[operator]
    with pytest.raises(DatagramError, match=None) as info:
        unpack_fragment(data)
    assert message in str(info.value)


def test_range_table_cut_short_and_fmcw_without_resolution_are_bad() -> None:
    g = uneven_geometry()
    dg = datagrams(g, iq_frames(g, 1)[0], max_bytes=200)[0]
    with pytest.raises(DatagramError, match="inside its range table of 11 points"):
        unpack_fragment(dg[: 56 + 20])
    f = fmcw_geometry()
    bad = bytearray(datagrams(f, chunk(f, 1).frames[0])[0])
    bad[52:56] = b"\0\0\0\0"
    with pytest.raises(DatagramError, match="fmcw_adc needs range_step_um"):
        unpack_fragment(bytes(bad))


def test_incomplete_frame_is_counted_and_never_glued() -> None:
    g = uneven_geometry()
    f0, f1 = iq_frames(g, 2, seed=6)
    a = datagrams(g, f0, index=0, max_bytes=200)
    b = datagrams(g, f1, seq=len(a), index=1, t_us=83_333, max_bytes=200)
    asm = FrameAssembler()
    got = assemble([*a[:2], *a[3:], *b], asm)  # fragment 2 of frame 0 lost
    assert len(got) == 1 and got[0].header.frame_index == 1
    assert np.array_equal(got[0].samples, f1)
    assert asm.counts.incomplete_frames == 1 and asm.counts.frames == 1 and asm.counts.lost_frames == 0


def test_frame_missing_its_last_fragment_is_incomplete_at_stream_end() -> None:
    g = uneven_geometry()
    a = datagrams(g, iq_frames(g, 1)[0], max_bytes=200)
    asm = FrameAssembler()
    assert assemble(a[:-1], asm) == []
    asm.reset()
    assert asm.counts.incomplete_frames == 1


def test_skipped_frame_indices_are_lost_frames() -> None:
    g = range_geometry(n_sweeps=8)
    frames = iq_frames(g, 3)
    asm = FrameAssembler()
    dgs = [datagrams(g, frames[i], seq=i, index=idx)[0] for i, idx in enumerate((0, 1, 4))]
    assert len(assemble(dgs, asm)) == 3
    assert asm.counts.lost_frames == 2


def test_fragment_disagreeing_with_its_frame_is_reported() -> None:
    g = uneven_geometry()
    a = datagrams(g, iq_frames(g, 1)[0], max_bytes=200)
    other = bytearray(a[1])
    other[40:44] = struct.pack("<I", 13_000)  # another frame rate
    asm = FrameAssembler()
    asm.push(unpack_fragment(a[0]))
    frame, problem = asm.push(unpack_fragment(bytes(other)))
    assert frame is None and problem is not None and "disagrees with its fragment 0" in problem
    for dg in a[2:]:
        assert asm.push(unpack_fragment(dg)) == (None, None)
    asm.reset()
    assert asm.counts.incomplete_frames == 1


def test_sender_refuses_what_the_wire_cannot_carry() -> None:
    g = range_geometry(n_sweeps=1, n_points=2)
    nan = np.full((1, 1, 1, 2), np.nan, dtype=np.complex64)
    with pytest.raises(ValueError, match="NaN or infinite"):
        wire_samples(nan, True)
    samples, stype = wire_samples(iq_frames(g, 1), True)
    with pytest.raises(ValueError, match="max_datagram_bytes must be in"):
        pack_frame(
            seq=0, frame_index=0, t_us=0, geometry=g, samples=samples[0], sample_type=stype, max_datagram_bytes=40
        )
    with pytest.raises(ValueError, match="sample bytes for a"):
        pack_frame(seq=0, frame_index=0, t_us=0, geometry=g, samples=samples, sample_type=SampleType.FLOAT32_IQ)
