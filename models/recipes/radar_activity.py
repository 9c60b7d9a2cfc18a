"""Training recipe: radar activity (presence / hand motion / breathing) for the ``snp`` chip. Needs the ``train`` extra.

    python -m models.recipes.radar_activity --data ../shared/data/radar --out models/zoo/radar-activity

Data: the Acconeer A121 recordings of ``radar/labels.csv`` whose label names a class
(``LABEL_PATTERNS``). Windows of ``WINDOW_MS`` every ``HOP_MS``, exactly where the runtime's
``window`` readout decides; a window's label is its recording's scenario when Acconeer's
reference detector confirms it in at least half of the window's frames
(``sensors.radar.reference``): **pseudo-labels, not ground truth**. Unconfirmed windows are
not used. Each recording is split in time: windows ending before ``--split`` of its length
train, windows starting after it test (``[training.held_out]`` in the manifest, which
``spikewire replay`` reads to report the same held-out figures on the emulated chip).

Network: input -> ``--hidden`` CuBa-LIF neurons -> one leaky integrator per class, read out
as the mean membrane over the window. Radar frames arrive 50-500 ms apart while the
neurons' time constants are 5 and 20 ms, so a frame's input has played out long before the
next one: the recipe simulates each frame's response alone for ``RESPONSE_TICKS`` 1 ms ticks
from rest, in the chip's exact discrete time, with 6-bit fake-quantised weights. The readout
is linear, so its window mean is the window's hidden spike counts through the output weights
times the integrator's DC gain over the window length (exactly, up to spikes in the last
few ticks of a window). ``spikewire replay`` then measures what the chip really does.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tomli_w

from models.network import Network, Population, Projection
from models.nir_io import write_network
from models.recipes.snn_torch import fake_quant as quantise
from models.recipes.snn_torch import spike
from sensors.blocks import SpikeBatch
from sensors.radar.encode import RadarEncoder
from sensors.radar.encoder_config import RadarEncoderConfig
from sensors.radar.frames import RadarBlock
from sensors.radar.reference import load_reference, window_truth

TICK_US = 1000
TAU_SYN_S = 5e-3
TAU_MEM_S = 20e-3
WEIGHT_BITS = 6
RESPONSE_TICKS = 48
WINDOW_MS = 2000.0
HOP_MS = 1000.0
LABELS = ["presence", "hand_motion", "breathing"]
LABEL_PATTERNS = {"presence": r"^presence", "hand_motion": r"^hand motion", "breathing": r"breathing"}


@dataclass
class Recording:
    path: Path
    scenario: str
    frame_t_us: np.ndarray
    """Times of all frames."""
    inputs: np.ndarray
    """(n_frames, n_channels) input spike counts, all at the frame's time."""
    windows: list[tuple[int, int, str | None]]
    """(start_us, end_us, pseudo-label or None) of every runtime window."""
    duration_us: int


def encode_recording(path: Path, cfg: RadarEncoderConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Frame times, per-frame spike counts and the stream length, one frame per block as the runtime replays it."""
    from sensors.radar.reader import open_radar

    enc = RadarEncoder(cfg)
    reader = open_radar(path)
    times, rows = [], []
    end_us = reader.end_time_us()
    try:
        while (chunk := reader.read(1)) is not None:
            t = int(chunk.t_us[0])
            nxt = reader.next_time_us()
            block = RadarBlock(
                str(path), chunk.geometry, chunk.frames, chunk.t_us, t, end_us if nxt is None else nxt, 0
            )
            batch: SpikeBatch = enc.encode(block)
            times.append(t)
            rows.append(np.bincount(batch.ch, minlength=cfg.n_channels))
    finally:
        reader.close()
    return np.array(times, np.int64), np.array(rows, np.float32), end_us


def runtime_windows(end_us: int, hop_ms: float = HOP_MS) -> list[tuple[int, int]]:
    """Where the ``window`` readout decides on a stream of ``end_us`` (hop-aligned); a smaller hop for training."""
    w, h = int(WINDOW_MS * 1000), int(hop_ms * 1000)
    return [(max(0, e - w), e) for e in range(w, end_us + 1, h)]


def load(data: Path, cfg: RadarEncoderConfig, train_hop_ms: float) -> list[Recording]:
    out = []
    with (data / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            path = data / row["file"]
            ref = load_reference(path, row["scenario_label"], LABEL_PATTERNS)
            if ref is None:
                continue
            t, x, end_us = encode_recording(path, cfg)
            wins = [(a, b, window_truth(ref, t, a, b)) for a, b in runtime_windows(end_us, train_hop_ms)]
            out.append(Recording(path, ref.scenario, t, x, wins, end_us))
            n_conf = sum(w[2] is not None for w in wins)
            print(f"{path.name}: {len(t)} frames, {len(wins)} windows, {n_conf} confirmed {ref.scenario}", flush=True)
    return out


def split_windows(recs: list[Recording], split: float) -> tuple[list, list]:
    """(recording index, start, end, class) of training windows (end <= split) and test windows (start >= split)."""
    train, test = [], []
    for i, r in enumerate(recs):
        cut = split * r.duration_us
        for a, b, truth in r.windows:
            if truth is None:
                continue
            item = (i, a, b, LABELS.index(truth))
            if b <= cut:
                train.append(item)
            elif a >= cut and (b - int(WINDOW_MS * 1000)) % int(HOP_MS * 1000) == 0:
                test.append(item)  # only where the runtime decides
    return train, test


def build_model(n_in: int, hidden: int, n_out: int):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    dt = TICK_US * 1e-6
    alpha, beta = math.exp(-dt / TAU_SYN_S), math.exp(-dt / TAU_MEM_S)

    class RadarSnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w_in = nn.Parameter(torch.randn(n_in, hidden) * 0.5)
            self.w_out = nn.Parameter(torch.randn(hidden, n_out) * 0.1)
            self.log_temp = nn.Parameter(torch.tensor(0.0))
            self.quantise = False

        def weights(self):  # type: ignore[no-untyped-def]
            ws = (self.w_in, self.w_out)
            return tuple(quantise(w, WEIGHT_BITS) for w in ws) if self.quantise else ws

        def frame_counts(self, x):  # type: ignore[no-untyped-def]
            # x: (frames, n_in) spike counts at one tick; hidden spikes per frame (frames, hidden).
            w_in, _ = self.weights()
            drive = x @ w_in
            cur = torch.zeros_like(drive)
            v = torch.zeros_like(drive)
            total = torch.zeros_like(drive)
            for t in range(RESPONSE_TICKS):
                # Input spikes of tick 0 reach the hidden synapses at tick 1, as on the chip.
                cur = alpha * cur + (drive if t == 1 else 0.0)
                v = beta * v + (1 - beta) * cur
                s = spike(v - 1.0)
                v = v * (1 - s.detach())
                total = total + s
            return total

        def forward(self, counts_per_window):  # type: ignore[no-untyped-def]
            _, w_out = self.weights()
            return counts_per_window @ w_out

    return RadarSnn(), alpha, beta


def window_matrix(recs: list[Recording], items: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows, all frames) 0/1 matrix selecting each window's frames, frame offsets, labels."""
    offsets = np.cumsum([0] + [len(r.frame_t_us) for r in recs])
    m = np.zeros((len(items), offsets[-1]), np.float32)
    for j, (i, a, b, _) in enumerate(items):
        t = recs[i].frame_t_us
        m[j, offsets[i] + np.flatnonzero((t >= a) & (t < b))] = 1.0
    return m, offsets, np.array([it[3] for it in items])


def train(recs: list[Recording], train_items: list, test_items: list, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    x = torch.from_numpy(np.concatenate([r.inputs for r in recs]))
    m_tr, _, y_tr = window_matrix(recs, train_items)
    m_te, _, y_te = window_matrix(recs, test_items)
    m_tr, m_te = torch.from_numpy(m_tr), torch.from_numpy(m_te)
    y_tr_t = torch.from_numpy(y_tr)
    # Balance the classes: breathing has ~4x the windows of the others.
    freq = np.bincount(y_tr, minlength=len(LABELS)).astype(np.float64)
    weight = torch.tensor(freq.sum() / np.maximum(freq, 1) / len(LABELS), dtype=torch.float32)
    model, alpha, beta = build_model(x.shape[1], args.hidden, len(LABELS))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.quantise = epoch >= args.epochs // 3
        model.train()
        counts = model.frame_counts(x)
        logits = model(m_tr @ counts) / model.log_temp.exp()
        rate = counts.mean()
        loss = torch.nn.functional.cross_entropy(logits, y_tr_t, weight=weight)
        loss = loss + args.rate_reg * torch.relu(rate - 2.0) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        if epoch % 10 == 0 or epoch == args.epochs - 1:
            with torch.no_grad():
                model.eval()
                c = model.frame_counts(x)
                acc_tr = float(((m_tr @ c @ model.weights()[1]).argmax(1).numpy() == y_tr).mean())
                acc_te = float(((m_te @ c @ model.weights()[1]).argmax(1).numpy() == y_te).mean())
            print(
                f"epoch {epoch + 1}/{args.epochs} loss {float(loss):.3f} hidden spikes/frame {float(rate):.2f} "
                f"train {acc_tr:.3f} held-out {acc_te:.3f} ({time.perf_counter() - t0:.1f} s)",
                flush=True,
            )
    model.quantise = True
    return model, alpha, beta, acc_te


def dc_gain(alpha: float, beta: float) -> float:
    """Total membrane response of the leaky integrator to one unit input: sum_k h[k] = 1 / (1 - alpha)."""
    return 1.0 / (1.0 - alpha)


def export(model, cfg: RadarEncoderConfig, out: Path, args: argparse.Namespace, meta: dict, gain: float) -> None:  # type: ignore[no-untyped-def]
    def pop(name: str, n: int, spiking: bool) -> Population:
        full = lambda v: np.full(n, v, np.float64)  # noqa: E731
        thr = full(1.0) if spiking else full(np.inf)
        return Population(name, n, full(TAU_SYN_S), full(TAU_MEM_S), full(1.0), full(0.0), thr, full(0.0))

    w_in, w_out = (p.detach().numpy().astype(np.float64) for p in (model.w_in, model.w_out))
    net = Network(
        n_inputs=cfg.n_channels,
        populations=(pop("hidden", args.hidden, True), pop("out", len(LABELS), False)),
        projections=(Projection("fc_in", "input", "hidden", w_in.T), Projection("fc_out", "hidden", "out", w_out.T)),
        output="out",
    )
    out.mkdir(parents=True, exist_ok=True)
    write_network(net, out / "model.nir")
    ticks = WINDOW_MS * 1000 / TICK_US
    # Runtime readout: mean membrane = (window counts @ w_out) * gain / ticks; the softmax
    # temperature scales by the same factor so the chip gives the trained scores.
    temperature = float(model.log_temp.detach().exp()) * gain / ticks
    manifest = {
        "labels": LABELS,
        "model": {
            "name": "radar-activity",
            "version": "0.1.0",
            "description": "Radar activity per 2 s window: presence, hand motion, breathing (Acconeer A121 60 GHz)",
            "modality": "radar",
            "target_chip": "snp",
            "license": "BSD-3-Clause-Clear (trained on Acconeer exploration-tool test recordings)",
        },
        "encoder": cfg.model_dump(),
        "readout": {
            "kind": "membrane_mean",
            "temperature": temperature,
            "mode": "window",
            "settings": {"window_ms": WINDOW_MS, "hop_ms": HOP_MS},
        },
        "training": meta,
    }
    (out / "manifest.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="radar folder with labels.csv")
    ap.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    ap.add_argument("--split", type=float, default=0.6, help="fraction of each recording used for training")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-2)
    ap.add_argument("--rate-reg", type=float, default=0.1)
    ap.add_argument("--train-hop-ms", type=float, default=250.0, help="hop between training windows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = RadarEncoderConfig()
    recs = load(args.data, cfg, args.train_hop_ms)
    train_items, test_items = split_windows(recs, args.split)
    for name, items in (("train", train_items), ("held-out", test_items)):
        n = np.bincount([it[3] for it in items], minlength=len(LABELS))
        print(f"{name} windows: " + ", ".join(f"{lab} {k}" for lab, k in zip(LABELS, n, strict=True)), flush=True)
    model, alpha, beta, acc = train(recs, train_items, test_items, args)
    meta = {
        "recipe": "models/recipes/radar_activity.py",
        "data": "Acconeer A121 recordings of radar/labels.csv (presence x3, hand motion x2, breathing x2)",
        "labels": "pseudo-labels: the recording's scenario where Acconeer's reference detector confirms it "
        "(sensors/radar/reference.py); not human ground truth",
        "label_patterns": LABEL_PATTERNS,
        "held_out": {"from_fraction": args.split},
        "split": f"time: windows ending before {args.split:g} of each recording train, windows starting after test",
        "train_windows": len(train_items),
        "test_windows": len(test_items),
        "hidden": args.hidden,
        "epochs": args.epochs,
        "lr": args.lr,
        "seed": args.seed,
        "torch_heldout_accuracy": acc,
    }
    export(model, cfg, args.out, args, meta, dc_gain(alpha, beta))
    print(f"wrote {args.out} (held-out window accuracy in torch, quantised: {acc:.3f})")


if __name__ == "__main__":
    main()
