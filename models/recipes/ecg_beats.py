"""Recipe of the ``ecg-beats`` bundle: a beat classifier (normal vs ventricular) on ``dynapse2``.

The classic DYNAP-SE design (Bauer et al. 2019; Corradi et al. 2019): a fixed, random spiking
network on the chip turns the level-crossing spikes of the ECG into a rich set of responses
with several time constants, and only the readout is trained. Here the readout is non-spiking
neurons on the chip, ``per_label`` of them per label, each reading its mean current over the beat
window; a label's score is the median of its neurons, so the whole decision runs on the
(emulated) chip.

Training is chip-in-the-loop, as with the real device: the random network runs on the
``dynapse2`` emulator over the training part of each record, on the ideal chip and on a few
mismatched instances; each label's readout weights are fitted (class-balanced ridge NNLS,
one-vs-rest) on the hidden neurons' spike trains filtered by the readout neuron's synapse and
membrane, non-negative (AMPA) and at most 64 per neuron (the CAM limit); the chip then fits each
core's four base weights to them. ``--instance-seed`` calibrates for one chip instance instead,
with a per-label offset fitted on that instance's own readout.

Data: MIT-BIH records 100 and 208, lead MLII, reference beat annotations. Time-disjoint split:
training on ``[0, SPLIT_S)`` of each record, testing on ``[SPLIT_S, end)`` (about 40 %).
Beat windows come from the runtime's own ``beat`` readout on the chip's results, so training
sees exactly the windows the replay decides on.

Run (about four minutes with the validation replays; needs no PyTorch)::

    python -m models.recipes.ecg_beats --data ../shared/data/ecg/mitdb --out models/zoo/ecg-beats
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from models.network import Network, Population, Projection
from models.nir_io import write_network
from runtime.chips.base import Chip, ChipResult
from runtime.readout import Readout, ReadoutSettings
from runtime.scoring import AAMI_CLASSES, TOLERANCE_US, match_by_time
from sensors.blocks import SpikeBatch
from sensors.ecg.annotations import read_annotations
from sensors.ecg.encode import encode_signal
from sensors.ecg.encoder_config import EcgEncoderConfig
from sensors.ecg.records import read_wfdb

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

RECORDS = ("100", "208")
LABELS = ("N", "V")
SPLIT_S = 1080.0
BLOCK_MS = 20.0
CAM = 64
READOUT_V99 = 0.6


@dataclass(frozen=True)
class Recipe:
    thresholds_mv: tuple[float, ...] = (0.05, 0.15)
    n_groups: int = 3
    group_size: int = 64
    fan_in: int = 6
    recurrent: int = 12
    tau_mem_ms: tuple[float, ...] = (5.0, 20.0, 60.0)
    tau_syn_ms: tuple[float, ...] = (5.0, 10.0, 30.0)
    w_in: float = 0.2
    w_rec: float = 0.1
    inhibitory_fraction: float = 0.3
    per_label: int = 8
    readout_tau_syn_ms: float = 10.0
    readout_tau_mem_ms: float = 20.0
    beat_window_ms: float = 200.0
    refractory_ms: float = 250.0
    l2: float = 1e-4
    train_mismatch_seeds: tuple[int, ...] = (11, 12, 13)
    instance_seed: int | None = None
    """Calibrate for one chip instance (mismatch on, this seed) instead of the ideal chip."""
    seed: int = 0


@dataclass(frozen=True)
class Record:
    name: str
    t_us: I64
    ch: npt.NDArray[np.int32]
    end_us: int
    beat_t_us: I64
    beat_class: list[str]


def load_record(data: Path, name: str, enc: EcgEncoderConfig) -> Record:
    rec = read_wfdb(data / name, lead="MLII")
    x = np.nan_to_num(rec.signals_mv[:, 0].astype(np.float64))
    t_us, ch = encode_signal(x, rec.rate_hz, enc)
    beats = read_annotations(data / name).beats()
    classes = [AAMI_CLASSES.get(s, "?") for s in beats.symbol]
    end_us = int(rec.n_samples * 1_000_000 // rec.rate_hz)
    return Record(name, t_us.astype(np.int64), ch.astype(np.int32), end_us, beats.t_us, classes)


def reservoir(n_in: int, r: Recipe) -> Network:
    """Random sparse network: groups of neurons with their own time constants (one core each)."""
    rng = np.random.default_rng(r.seed)
    n_h = r.n_groups * r.group_size
    tau_mem = np.repeat(np.asarray(r.tau_mem_ms) * 1e-3, r.group_size)
    tau_syn = np.repeat(np.asarray(r.tau_syn_ms) * 1e-3, r.group_size)
    w_in = np.zeros((n_h, n_in))
    for i in range(n_h):
        src = rng.choice(n_in, size=min(r.fan_in, n_in), replace=False)
        w_in[i, src] = r.w_in * rng.uniform(0.5, 1.5, len(src))
    w_rec = np.zeros((n_h, n_h))
    for i in range(n_h):
        src = rng.choice(np.delete(np.arange(n_h), i), size=r.recurrent, replace=False)
        sign = np.where(rng.random(r.recurrent) < r.inhibitory_fraction, -1.0, 1.0)
        w_rec[i, src] = sign * r.w_rec * rng.uniform(0.5, 1.5, r.recurrent)
    hidden = Population(
        name="hidden",
        size=n_h,
        tau_syn_s=tau_syn,
        tau_mem_s=tau_mem,
        r=np.ones(n_h),
        v_leak=np.zeros(n_h),
        v_threshold=np.ones(n_h),
        v_reset=np.zeros(n_h),
    )
    return Network(
        n_inputs=n_in,
        populations=(hidden,),
        projections=(Projection("w_in", "input", "hidden", w_in), Projection("w_rec", "hidden", "hidden", w_rec)),
        output="hidden",
    )


def with_readout(res: Network, w_out: F64, r: Recipe) -> Network:
    """Add the readout: ``r.per_label`` identical non-spiking neurons per label (label-major), whose median is
    the label's score, so that one neuron's mismatch (or runaway) cannot decide a beat on its own."""
    n = len(LABELS) * r.per_label
    w_out = np.repeat(w_out, r.per_label, axis=0)
    out = Population(
        name="out",
        size=n,
        tau_syn_s=np.full(n, r.readout_tau_syn_ms * 1e-3),
        tau_mem_s=np.full(n, r.readout_tau_mem_ms * 1e-3),
        r=np.ones(n),
        v_leak=np.zeros(n),
        v_threshold=np.full(n, np.inf),
        v_reset=np.zeros(n),
    )
    proj = (*res.projections, Projection("w_out", "hidden", "out", w_out))
    return Network(res.n_inputs, (*res.populations, out), proj, "out")


def run_chip(chip: Chip, rec: Record, until_us: int | None = None) -> list[ChipResult]:
    """The record in ``BLOCK_MS`` batches, as the file source and pipeline hand it to the chip."""
    chip.reset()
    end = rec.end_us if until_us is None else min(until_us, rec.end_us)
    step = int(BLOCK_MS * 1000)
    edges = np.arange(0, end + step, step)
    edges[-1] = end
    cut = np.searchsorted(rec.t_us, edges)
    out = []
    for k in range(len(edges) - 1):
        a, b = cut[k], cut[k + 1]
        batch = SpikeBatch(rec.name, rec.t_us[a:b], rec.ch[a:b], chip.n_inputs, int(edges[k]), int(edges[k + 1]), 0)
        out.append(chip.run(batch))
    return out


def beat_windows(results: list[ChipResult], n_in: int, threshold: float, r: Recipe) -> list[tuple[int, int]]:
    settings = ReadoutSettings(
        mode="beat",
        kind="membrane_mean",
        temperature=1.0,
        n_inputs=n_in,
        activity_threshold=threshold,
        beat_window_ms=r.beat_window_ms,
        refractory_ms=r.refractory_ms,
    )
    ro = Readout(settings, len(results[0].stats.readout_v_sum) if results else 1)
    wins = []
    for res in results:
        wins += [(d.start_us, d.end_us) for d in ro.push("rec", res, 0)]
    wins += [(d.start_us, d.end_us) for d in ro.end_of_stream("rec", None)]
    return wins


def _kernel_integral(dt_s: F64, tau_s: float, tau_m: float) -> F64:
    """Integral over [0, dt] of the readout's unit impulse response (syn -> mem, unit DC gain)."""
    dt_s = np.maximum(dt_s, 0.0)
    if math.isclose(tau_s, tau_m):
        tau_m *= 1.0001
    c = tau_s / (tau_s - tau_m)
    return c * (tau_s * (1 - np.exp(-dt_s / tau_s)) - tau_m * (1 - np.exp(-dt_s / tau_m)))


def window_features(results: list[ChipResult], wins: list[tuple[int, int]], n_h: int, r: Recipe) -> F64:
    """Mean over each window of every hidden neuron's spike train seen through the readout's filters."""
    t = np.concatenate([res.spike_t_us for res in results]) if results else np.empty(0, np.int64)
    n = np.concatenate([res.spike_ch for res in results]) if results else np.empty(0, np.int32)
    tau_s, tau_m = r.readout_tau_syn_ms * 1e-3, r.readout_tau_mem_ms * 1e-3
    reach_us = int(8 * max(tau_s, tau_m) * 1e6)
    x = np.zeros((len(wins), n_h))
    for i, (a, b) in enumerate(wins):
        lo, hi = np.searchsorted(t, a - reach_us), np.searchsorted(t, b)
        s_s: F64 = t[lo:hi].astype(np.float64) * 1e-6
        contrib = _kernel_integral(b * 1e-6 - s_s, tau_s, tau_m) - _kernel_integral(a * 1e-6 - s_s, tau_s, tau_m)
        np.add.at(x[i], n[lo:hi], contrib / ((b - a) * 1e-6))
    return x


def make_chip(net: Network, *, mismatch: bool, seed: int) -> Chip:
    from runtime.chips.dynapse2.chip import Dynapse2Chip
    from runtime.chips.dynapse2.compile import compile_dynapse2
    from runtime.chips.profile import AdexCoreProfile, load_profile

    profile = load_profile("dynapse2")
    assert isinstance(profile, AdexCoreProfile)
    return Dynapse2Chip(compile_dynapse2(net, profile, mismatch=mismatch, seed=seed))


def window_labels(rec: Record, wins: list[tuple[int, int]]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Class index of the annotated beat each window matches (±150 ms from its onset); mask of usable windows."""
    onset = np.array([a for a, _ in wins], np.int64)
    m = match_by_time(onset, rec.beat_t_us, TOLERANCE_US)
    y = np.zeros(len(wins), np.int64)
    ok = np.zeros(len(wins), bool)
    for d, b in zip(m.decision.tolist(), m.beat.tolist(), strict=True):
        c = rec.beat_class[b]
        if c in LABELS:
            y[d], ok[d] = LABELS.index(c), True
    # Windows with no beat (a T wave or noise that triggered) are trained towards N: the
    # readout must not call them V, and N is the harmless default on a monitor.
    ok[np.setdiff1d(np.arange(len(wins)), m.decision)] = True
    return y, ok


def tune_threshold(recs: list[Record], results: dict[str, list[ChipResult]], n_in: int, r: Recipe) -> float:
    """Input activity (spikes per channel per ms) that best separates beats from the rest, on training data."""
    best, best_f1 = 0.05, -1.0
    for thr in np.round(np.geomspace(0.01, 0.5, 24), 4):
        tp = fp = fn = 0
        for rec in recs:
            wins = beat_windows(results[rec.name], n_in, float(thr), r)
            onset = np.array([a for a, _ in wins], np.int64)
            beats = rec.beat_t_us[rec.beat_t_us < SPLIT_S * 1e6]
            m = match_by_time(onset, beats, TOLERANCE_US)
            tp += len(m.decision)
            fp += len(onset) - len(m.decision)
            fn += len(beats) - len(m.beat)
        f1 = 2 * tp / max(2 * tp + fp + fn, 1)
        if f1 > best_f1:
            best, best_f1 = float(thr), f1
    print(f"activity threshold {best} (beat detection F1 {best_f1:.4f} on the training part)")
    return best


def fit_nonneg(x: F64, y: npt.NDArray[np.int64], l2: float) -> F64:
    """One non-negative readout row per label, each at most ``CAM`` synapses: label ``k``'s neuron is
    fitted (class-balanced ridge NNLS) to read 1 on windows of label ``k`` and 0 on the others.

    Unlike a logistic readout split by sign, each neuron stays near 0 on the other class, so the
    decision does not hang on a small difference between two large currents: an analog chip's
    per-neuron offsets and gains (mismatch) move both by a fraction of the margin, not more.
    """
    from scipy.optimize import nnls

    n, f = x.shape
    w = np.zeros((len(LABELS), f))
    for k in range(len(LABELS)):
        target = (y == k).astype(np.float64)
        sw = np.sqrt(np.where(target > 0, 0.5 / max(target.mean(), 1e-9), 0.5 / max(1 - target.mean(), 1e-9)))
        support = np.arange(f)
        for _ in range(4):
            a = np.vstack((x[:, support] * sw[:, None], np.sqrt(l2 * n) * np.eye(len(support))))
            b = np.concatenate((target * sw, np.zeros(len(support))))
            coef, _ = nnls(a, b, maxiter=50 * len(support))
            w[k] = 0.0
            w[k, support] = coef
            nz = np.flatnonzero(w[k])
            if len(nz) <= CAM:
                break
            support = np.sort(nz[np.argsort(-(w[k, nz] * x[:, nz].std(axis=0)))[:CAM]])
    return w


def train(recs: list[Record], enc: EcgEncoderConfig, r: Recipe) -> tuple[Network, dict[str, float]]:
    n_in = enc.n_channels
    res_net = reservoir(n_in, r)
    n_h = res_net.population("hidden").size
    chip = make_chip(res_net, mismatch=r.instance_seed is not None, seed=r.instance_seed or 0)
    runs = {rec.name: run_chip(chip, rec, int(SPLIT_S * 1e6)) for rec in recs}
    thr = tune_threshold(recs, runs, n_in, r)
    # Windows depend on the input only; the hidden responses also on the chip instance. Features
    # from several mismatched instances teach the readout what does not depend on one chip.
    wins = {rec.name: beat_windows(runs[rec.name], n_in, thr, r) for rec in recs}
    xs, ys = [], []
    for seed in (r.instance_seed, *r.train_mismatch_seeds):
        if seed is not None and seed != r.instance_seed:
            chip = make_chip(res_net, mismatch=True, seed=seed)
            runs = {rec.name: run_chip(chip, rec, int(SPLIT_S * 1e6)) for rec in recs}
        for rec in recs:
            results = runs[rec.name]
            y, ok = window_labels(rec, wins[rec.name])
            xs.append(window_features(results, wins[rec.name], n_h, r)[ok])
            ys.append(y[ok])
            rate = sum(len(x.spike_t_us) for x in results) / (SPLIT_S * n_h)
            print(f"{rec.name} (mismatch {seed}): {len(wins[rec.name])} windows, {int(ok.sum())} used, {rate:.1f} Hz")
    x, y = np.concatenate(xs), np.concatenate(ys)
    scale = x.std(axis=0) + 1e-9
    w_out = fit_nonneg(x / scale, y, r.l2) / scale
    acc = np.mean(np.argmax(x @ w_out.T, axis=1) == y)
    n_syn = np.count_nonzero(w_out)
    print(f"training: {int((y == 1).sum())} V / {len(y)} windows, accuracy {acc:.4f}, {n_syn} readout synapses")
    # The readout neurons are linear only well below their rheobase (about v = 4 on dynapse2,
    # where the exponential feedback runs away): scale the weights so that 99 % of training
    # windows stay below v = READOUT_V99. A label's neuron then reads about k on its own class and
    # 0 on the other: temperature k / 4 turns that gap into a score of about 0.98.
    k = READOUT_V99 / float(np.percentile((x @ w_out.T).max(axis=1), 99))
    net = with_readout(res_net, k * w_out, r)
    info = {"activity_threshold": thr, "train_windows": len(y), "train_v": int((y == 1).sum()), "temperature": k / 4}
    return net, info


def calibrate_offsets(net: Network, recs: list[Record], thr: float, r: Recipe, seed: int) -> list[float]:
    """Per-label offsets for one chip instance, from its own readout on the training part.

    The instance's readout neurons rest and gain differently (mismatch); the decision threshold
    on ``r_V - r_N`` that best separates the training beats (balanced accuracy) is moved into
    the manifest's ``readout.offsets``, as one calibrates a physical chip.
    """
    chip = make_chip(net, mismatch=True, seed=seed)
    diffs, labels = [], []
    for rec in recs:
        results = run_chip(chip, rec, int(SPLIT_S * 1e6))
        wins = beat_windows(results, chip.n_inputs, thr, r)
        y, ok = window_labels(rec, wins)
        start = np.array([res.stats.t_start_us for res in results])
        v_sum = np.array([res.stats.readout_v_sum for res in results])
        ticks = np.array([res.stats.ticks for res in results])
        for (a, b), lab, use in zip(wins, y, ok, strict=True):
            if not use:
                continue
            k = (start >= a) & (start < b)
            means = v_sum[k].sum(axis=0) / max(int(ticks[k].sum()), 1)
            per_label = np.median(means.reshape(len(LABELS), -1), axis=1)  # as runtime.readout aggregates
            diffs.append(per_label[1] - per_label[0])
            labels.append(lab)
    d, y_arr = np.asarray(diffs), np.asarray(labels)
    cands = np.quantile(d, np.linspace(0.01, 0.99, 197))
    score = [(np.mean(d[y_arr == 1] > t) + np.mean(d[y_arr == 0] <= t)) / 2 for t in cands]
    best = float(cands[int(np.argmax(score))])
    print(f"instance {seed}: readout offset {best:.4f} (balanced accuracy {max(score):.4f} on the training part)")
    return [0.0, best]


def manifest(
    enc: EcgEncoderConfig, info: dict[str, float], r: Recipe, offsets: list[float] | None = None
) -> dict[str, Any]:
    readout: dict[str, Any] = {"offsets": offsets} if offsets is not None else {}
    return {
        "labels": list(LABELS),
        "model": {
            "name": "ecg-beats",
            "version": "0.1.0",
            "description": "Heart beats, normal (N) vs ventricular (V), one decision per beat, lead MLII",
            "modality": "ecg",
            "target_chip": "dynapse2",
            "license": "ODC-By-1.0 (trained on MIT-BIH Arrhythmia Database records 100 and 208)",
        },
        "encoder": enc.model_dump(mode="json", exclude_none=True),
        "readout": {
            "kind": "membrane_mean",
            "temperature": info["temperature"],
            **readout,
            "mode": "beat",
            "settings": {
                "activity_threshold": info["activity_threshold"],
                "beat_window_ms": r.beat_window_ms,
                "refractory_ms": r.refractory_ms,
                "batch_ms": BLOCK_MS,
            },
        },
        "training": {
            "recipe": "models/recipes/ecg_beats.py",
            "data": "MIT-BIH 100 and 208, lead MLII, reference beat annotations (AAMI classes N and V)",
            "split": f"time-disjoint: train on [0, {SPLIT_S:g}) s of each record, test on [{SPLIT_S:g} s, end)",
            "held_out": {"records": list(RECORDS), "from_s": SPLIT_S},
            "train_windows": info["train_windows"],
            "train_v": info["train_v"],
            **{k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(r).items() if v is not None},
        },
    }


def validate(out: Path, data: Path, seeds: tuple[int | None, ...]) -> list[dict[str, Any]]:
    """Replay both records through the written bundle (the runtime's own path) and keep the held-out figures."""
    from runtime.replay import ReplayOptions, run_replay

    entries = []
    for seed in seeds:
        paths = [data / name for name in RECORDS]
        s = run_replay(ReplayOptions(paths=paths, model=str(out), mismatch=seed is not None, seed=seed or 0))
        held = s["held_out"]
        v = held["per_class"]["V"]
        print(
            f"mismatch {'seed ' + str(seed) if seed is not None else 'off'}: held-out {json.dumps(held['per_class'])}"
        )
        mm = f"--mismatch on --seed {seed}" if seed is not None else "--mismatch off"
        entries.append(
            {
                "dataset": "MIT-BIH records 100 and 208, lead MLII",
                "protocol": f"{held['protocol']}: beat-by-beat, +-150 ms, AAMI N/V (F and Q beats unscored)",
                "chip": f"dynapse2, mismatch {'on, seed ' + str(seed) if seed is not None else 'off'}",
                "details": {
                    "V_sensitivity": v["sensitivity"],
                    "V_ppv": v["ppv"],
                    "V_n": v["n"],
                    "N_sensitivity": held["per_class"]["N"]["sensitivity"],
                    "N_ppv": held["per_class"]["N"]["ppv"],
                    "N_n": held["per_class"]["N"]["n"],
                    "beats_detected": held["beats_detected"],
                    "beats": held["beats"],
                },
                "command": f"spikewire replay {data}/100 {data}/208 --model ecg-beats {mm} --json  (key held_out)",
            }
        )
    return entries


def main() -> None:
    import tomli_w

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/ecg/mitdb"))
    ap.add_argument("--out", type=Path, default=Path("models/zoo/ecg-beats"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mismatch-seeds", type=int, nargs="*", default=[1, 2, 3], help="chip instances to validate on")
    ap.add_argument(
        "--instance-seed",
        type=int,
        default=None,
        help="calibrate the readout for one emulated chip instance (mismatch on, this seed), as one would "
        "for a physical chip; validated on that instance only",
    )
    ap.add_argument("--validate-only", action="store_true", help="re-run the validation of the bundle in --out")
    args = ap.parse_args()
    if args.validate_only:
        man = tomllib.loads((args.out / "manifest.toml").read_text(encoding="utf-8"))
        man["validation"] = validate(args.out, args.data, (None, *args.mismatch_seeds))
        (args.out / "manifest.toml").write_text(tomli_w.dumps(man), encoding="utf-8")
        return
    if args.instance_seed is not None:
        r = Recipe(seed=args.seed, train_mismatch_seeds=(), instance_seed=args.instance_seed)
        seeds: tuple[int | None, ...] = (args.instance_seed,)
    else:
        r = Recipe(seed=args.seed)
        seeds = (None, *args.mismatch_seeds)
    enc = EcgEncoderConfig(rate_hz=360.0, thresholds_mv=r.thresholds_mv)
    recs = [load_record(args.data, name, enc) for name in RECORDS]
    net, info = train(recs, enc, r)
    args.out.mkdir(parents=True, exist_ok=True)
    write_network(net, args.out / "model.nir")
    offsets = None
    if r.instance_seed is not None:
        offsets = calibrate_offsets(net, recs, info["activity_threshold"], r, r.instance_seed)
    man = manifest(enc, info, r, offsets)
    (args.out / "manifest.toml").write_text(tomli_w.dumps(man), encoding="utf-8")
    man["validation"] = validate(args.out, args.data, seeds)
    (args.out / "manifest.toml").write_text(tomli_w.dumps(man), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
