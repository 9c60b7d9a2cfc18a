"""DVS front end: every step against a small numpy reimplementation, state across blocks, drop counts."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import ValidationError

from sensors.blocks import EVENT_DTYPE, EventBlock, InputError
from sensors.dvs.preprocess import DROP_REASONS, DvsEncoder, DvsPreprocessConfig, output_shape, random_events

W, H = 23, 17  # odd sizes: pooling leaves a remainder
Events = npt.NDArray[np.void]


def block(ev: Events, width: int = W, height: int = H, t0: int = 0, t1: int = 10**9) -> EventBlock:
    return EventBlock("s", ev, width, height, t0, t1, 123)


def frame_of(ev: Events, width: int = W, height: int = H) -> npt.NDArray[np.int64]:
    """Event counts (polarity, y, x): the reference works on whole images."""
    f = np.zeros((2, height, width), dtype=np.int64)
    np.add.at(f, (ev["p"].astype(int), ev["y"].astype(int), ev["x"].astype(int)), 1)
    return f


def reference_map(ev: Events, cfg: DvsPreprocessConfig, width: int = W, height: int = H) -> npt.NDArray[np.int64]:
    """Crop (shrunk to a multiple of pool), polarity, mirror, transpose, pool, written with array ops."""
    x0, y0, w, h = cfg.roi or (0, 0, width, height)
    p = cfg.pool
    f = frame_of(ev, width, height)[:, y0 : y0 + h - h % p, x0 : x0 + w - w % p]
    f = {"both": f, "merge": f.sum(0, keepdims=True), "on": f[1:], "off": f[:1]}[cfg.polarity]
    if cfg.mirror_x:
        f = f[:, :, ::-1]
    if cfg.mirror_y:
        f = f[:, ::-1, :]
    if cfg.transpose:
        f = f.transpose(0, 2, 1)
    c, fh, fw = f.shape
    return f.reshape(c, fh // p, p, fw // p, p).sum(axis=(2, 4))


def encoded_map(enc: DvsEncoder, ev: Events) -> npt.NDArray[np.int64]:
    out = enc.encode(block(ev, enc.width, enc.height))
    assert out.n_channels == enc.n_channels and (np.diff(out.t_us) >= 0).all()
    return np.bincount(out.ch, minlength=out.n_channels).reshape(enc.shape)


@pytest.mark.parametrize(
    "cfg",
    [
        DvsPreprocessConfig(),
        DvsPreprocessConfig(polarity="merge", pool=2),
        DvsPreprocessConfig(polarity="on", roi=(3, 2, 14, 11), pool=4),
        DvsPreprocessConfig(polarity="off", mirror_x=True, roi=(1, 1, 9, 13)),
        DvsPreprocessConfig(mirror_y=True, pool=2, roi=(0, 4, 22, 13)),
        DvsPreprocessConfig(transpose=True, roi=(2, 0, 19, 12)),
        DvsPreprocessConfig(transpose=True, mirror_x=True, mirror_y=True, pool=2, polarity="merge"),
        DvsPreprocessConfig(transpose=True, mirror_y=True, pool=4),
    ],
)
def test_geometry_and_polarity_match_the_reference(cfg: DvsPreprocessConfig) -> None:
    ev = random_events(5000, W, H, 10_000, seed=1)
    enc = DvsEncoder(cfg, W, H)
    got = encoded_map(enc, ev)
    want = reference_map(ev, cfg)
    assert got.shape == want.shape == output_shape(cfg, W, H)
    np.testing.assert_array_equal(got, want)
    assert sum(enc.drops().values()) == len(ev) - want.sum()


def test_rotation_of_one_pixel() -> None:
    ev = np.zeros(1, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"] = 1, 0, True  # near the top-left corner of a 4 (wide) x 3 (high) sensor
    rot90 = DvsEncoder(DvsPreprocessConfig(polarity="merge", transpose=True, mirror_x=True), 4, 3)
    assert rot90.shape == (1, 4, 3)
    # transpose sends (x=1, y=0) to (x=0, y=1); mirror_x first sent it to x=2: so (x=0, y=2), ch = 2 * 3 + 0
    assert rot90.encode(block(ev, 4, 3)).ch.tolist() == [6]


def test_both_puts_on_events_in_channel_1() -> None:
    ev = random_events(200, W, H, 1000, seed=2)
    out = DvsEncoder(DvsPreprocessConfig(), W, H).encode(block(ev))
    want = ev["p"].astype(int) * H * W + ev["y"].astype(int) * W + ev["x"].astype(int)
    np.testing.assert_array_equal(out.ch, want)
    np.testing.assert_array_equal(out.t_us, ev["t"])
    assert (out.stream, out.t_start_us, out.t_end_us, out.captured_ns, out.n_channels) == (
        "s",
        0,
        10**9,
        123,
        2 * H * W,
    )


def test_hot_pixels_and_out_of_sensor_events_are_dropped_and_counted() -> None:
    ev = random_events(3000, W + 3, H + 2, 10_000, seed=3)  # some events lie beyond the declared W x H
    hot = [(0, 0), (5, 7), (22, 16)]
    enc = DvsEncoder(DvsPreprocessConfig(hot_pixels=hot), W, H)
    inside = (ev["x"] < W) & (ev["y"] < H)
    is_hot = np.zeros((H, W), dtype=bool)
    for x, y in hot:
        is_hot[y, x] = True
    kept = ev[inside][~is_hot[ev[inside]["y"], ev[inside]["x"]]]
    np.testing.assert_array_equal(encoded_map(enc, ev), reference_map(kept, DvsPreprocessConfig()))
    drops = enc.drops()
    assert drops["out_of_sensor"] == (~inside).sum() > 0
    assert drops["hot_pixel"] == len(ev) - len(kept) - drops["out_of_sensor"] > 0


def noise_reference(ev: Events, window_us: int) -> npt.NDArray[np.bool_]:
    """Kept iff an earlier event (any, kept or not) of one of the 8 neighbours is at most window_us older."""
    x, y, t = (ev[k].astype(np.int64) for k in ("x", "y", "t"))
    i, j = np.arange(len(ev))[:, None], np.arange(len(ev))[None, :]
    dx, dy = np.abs(x[:, None] - x[None, :]), np.abs(y[:, None] - y[None, :])
    neighbour = (dx <= 1) & (dy <= 1) & ((dx + dy) > 0)
    return (neighbour & (j < i) & (t[:, None] - t[None, :] <= window_us)).any(axis=1)


def refractory_reference(ev: Events, period_us: int) -> npt.NDArray[np.bool_]:
    keep = np.zeros(len(ev), dtype=bool)
    last: dict[tuple[int, int], int] = {}
    for k, e in enumerate(ev):
        pix = (int(e["x"]), int(e["y"]))
        if pix not in last or int(e["t"]) - last[pix] >= period_us:
            keep[k] = True
            last[pix] = int(e["t"])
    return keep


def test_noise_filter_matches_the_reference() -> None:
    ev = random_events(1500, 12, 9, 30_000, seed=4)
    out = DvsEncoder(DvsPreprocessConfig(noise_filter_us=150), 12, 9).encode(block(ev, 12, 9))
    keep = noise_reference(ev, 150)
    assert 0 < keep.sum() < len(ev)
    np.testing.assert_array_equal(out.t_us, ev["t"][keep])
    ch = (ev["p"].astype(int) * 9 + ev["y"].astype(int)) * 12 + ev["x"].astype(int)
    np.testing.assert_array_equal(out.ch, ch[keep])


def test_refractory_matches_the_reference() -> None:
    ev = random_events(3000, 6, 5, 20_000, seed=5)
    enc = DvsEncoder(DvsPreprocessConfig(refractory_us=300, polarity="merge"), 6, 5)
    out = enc.encode(block(ev, 6, 5))
    keep = refractory_reference(ev, 300)
    assert 0 < keep.sum() < len(ev)
    np.testing.assert_array_equal(out.t_us, ev["t"][keep])
    np.testing.assert_array_equal(out.ch, (ev["y"].astype(int) * 6 + ev["x"].astype(int))[keep])
    assert enc.drops()["refractory"] == (~keep).sum()


def test_noise_then_refractory_then_crop_order() -> None:
    ev = random_events(2500, 12, 9, 15_000, seed=6)
    cfg = DvsPreprocessConfig(noise_filter_us=200, refractory_us=100, roi=(2, 1, 8, 6), pool=2, polarity="on")
    enc = DvsEncoder(cfg, 12, 9)
    after_noise = ev[noise_reference(ev, 200)]
    filtered = after_noise[refractory_reference(after_noise, 100)]
    np.testing.assert_array_equal(encoded_map(enc, ev), reference_map(filtered, cfg, 12, 9))
    drops = enc.drops()
    assert drops["noise"] == len(ev) - len(after_noise) and drops["refractory"] == len(after_noise) - len(filtered)


def test_filter_state_carries_across_blocks_and_reset_forgets_it() -> None:
    ev = random_events(20_000, W, H, 100_000, seed=7)
    cfg = DvsPreprocessConfig(noise_filter_us=400, refractory_us=200, pool=2, hot_pixels=[(3, 3)])
    whole = DvsEncoder(cfg, W, H).encode(block(ev))
    chunked_enc = DvsEncoder(cfg, W, H)
    cuts = np.sort(np.random.default_rng(8).choice(len(ev), 30, replace=False))
    parts = [chunked_enc.encode(block(part)) for part in np.split(ev, cuts)]
    np.testing.assert_array_equal(np.concatenate([p.t_us for p in parts]), whole.t_us)
    np.testing.assert_array_equal(np.concatenate([p.ch for p in parts]), whole.ch)
    # After reset() the encoder treats the next block like a fresh one does.
    chunked_enc.reset()
    again, fresh = chunked_enc.encode(block(ev[:5000])), DvsEncoder(cfg, W, H).encode(block(ev[:5000]))
    np.testing.assert_array_equal(again.ch, fresh.ch)
    np.testing.assert_array_equal(again.t_us, fresh.t_us)


def test_drop_counts_add_up_with_everything_on() -> None:
    ev = random_events(30_000, W + 2, H + 2, 60_000, seed=9)
    cfg = DvsPreprocessConfig(
        polarity="off", roi=(2, 3, 15, 11), pool=2, noise_filter_us=300, refractory_us=150, hot_pixels=[(4, 4)]
    )
    enc = DvsEncoder(cfg, W, H)
    n_out = sum(len(enc.encode(block(part))) for part in np.array_split(ev, 7))
    drops = enc.drops()
    assert set(drops) == set(DROP_REASONS) == {"roi", "polarity", "refractory", "noise", "hot_pixel", "out_of_sensor"}
    assert all(n > 0 for n in drops.values())
    assert len(ev) == n_out + sum(drops.values())


def test_empty_block_and_wrong_blocks() -> None:
    enc = DvsEncoder(DvsPreprocessConfig(), W, H)
    out = enc.encode(EventBlock("s", np.zeros(0, dtype=EVENT_DTYPE), W, H, 5, 9, 1))
    assert len(out) == 0 and (out.t_start_us, out.t_end_us) == (5, 9)
    with pytest.raises(InputError, match="a 24x17 block given to a 23x17 encoder"):
        enc.encode(block(random_events(3, W, H, 10), width=24))
    with pytest.raises(InputError, match="expected"):
        enc.encode(block(np.zeros(3, dtype=[("t", "<i8"), ("x", "<i4")])))


def test_output_shape() -> None:
    assert output_shape(DvsPreprocessConfig(), 346, 260) == (2, 260, 346)
    assert output_shape(DvsPreprocessConfig(polarity="merge", pool=4), 346, 260) == (1, 65, 86)
    assert output_shape(DvsPreprocessConfig(pool=2, roi=(10, 20, 64, 31), transpose=True), 346, 260) == (2, 32, 15)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"pool": 3}, "pool"),
        ({"polarity": "positive"}, "polarity"),
        ({"refractory_us": -1}, "refractory_us"),
        ({"noise_filter_us": -5}, "noise_filter_us"),
        ({"roi": (-1, 0, 4, 4)}, "roi"),
        ({"roi": (0, 0, 0, 4)}, "roi"),
        ({"hot_pixels": [(1, -2)]}, "hot_pixels"),
        ({"mirror": True}, "mirror"),
    ],
)
def test_config_errors_name_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        DvsPreprocessConfig.model_validate(fields)
    assert [e["loc"][0] for e in info.value.errors()] == [field]


def test_roi_outside_the_sensor_is_named_with_numbers() -> None:
    cfg = DvsPreprocessConfig(roi=(300, 10, 64, 64))
    with pytest.raises(
        ValueError, match=r"roi \(x0=300, y0=10, width=64, height=64\) reaches x=364, y=74: outside the 346x260 sensor"
    ):
        output_shape(cfg, 346, 260)
    with pytest.raises(ValueError, match="roi: a 3x3 region pooled by pool=4 leaves no pixels"):
        output_shape(DvsPreprocessConfig(roi=(0, 0, 3, 3), pool=4), 346, 260)
    with pytest.raises(ValueError, match=r"hot_pixels: \(400, 1\) is outside the 346x260 sensor"):
        DvsEncoder(DvsPreprocessConfig(hot_pixels=[(400, 1)]), 346, 260)
