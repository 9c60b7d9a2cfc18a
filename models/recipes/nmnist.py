"""Training recipe: N-MNIST digits for the ``dynapcnn`` chip. Needs the ``train`` extra.

    python -m models.recipes.nmnist --data ../shared/data/dvs/nmnist --out models/zoo/nmnist

The network is a chain of conv -> non-leaky IAF -> sum-pool layers (``models.convnet``), trained
with surrogate gradients through time: events are binned, each bin is one step, a spike
travels through every layer within its step (the chip has no per-layer delay), and the IAF
neurons do what the chip's do: multi-spike ``floor(v / theta)``, reset by subtraction. No
state floor is trained (``v_min = -inf``, the chip keeps its own -2^15 steps), which lets a
layer be computed without a loop over steps (see ``Net.forward``). Weights are fake-quantised
to 8 bits per layer (max-abs, straight through) and the threshold rounded to the same step,
as ``compile_convnet`` does, so what is trained is what the chip loads. The readout is the
output layer's spike count over the whole recording.

The first epochs see each recording as one bin (an ANN on event counts: cheap, learns fast);
later ones see time in bins of a randomly drawn size per batch, because the chip is event
driven (the emulator steps once per microsecond) and the net must not depend on how events
are grouped. A held-out tenth of the train split picks the epoch; the test split is scored
once at the end. ``models.recipes.nmnist_eval`` scores the bundle on the emulated chip.
"""

# mypy: allow-untyped-calls
# (torch's autograd Function.apply and Tensor.unflatten are untyped)
from __future__ import annotations

import argparse
import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SENSOR = 34
LABELS = [str(d) for d in range(10)]
WEIGHT_LEVELS = 127  # 8-bit signed weights
# (kernel memory, neuron memory) per core, in Ki entries (DESIGN.md, dynapcnn row).
CORES_KI = [(16, 64), (16, 64), (16, 64), (32, 32), (32, 32), (64, 16), (64, 16), (16, 16), (16, 16)]


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray
    t_us: np.ndarray


def read_bin(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, y, p (1 = ON), t_us of one N-MNIST file, t rebased so the first event is at 0."""
    try:
        from sensors.dvs.reader import read_events
    except ImportError:
        raw = np.fromfile(path, np.uint8)
        if raw.size % 5:
            msg = f"{path}: {raw.size} bytes is not a whole number of 5-byte N-MNIST events"
            raise ValueError(msg) from None
        b = raw.reshape(-1, 5).astype(np.int64)
        t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
        x, y, p = b[:, 0], b[:, 1], b[:, 2] >> 7
    else:
        ev, _ = read_events(path)
        x, y, p, t = ev["x"].astype(np.int64), ev["y"].astype(np.int64), ev["p"].astype(np.int64), ev["t"]
    return x, y, p, (t - t[0]).astype(np.int64)


def load(data: Path, split: str) -> list[Sample]:
    # labels.csv has a stray CR after some labels (copied from CRLF label files): read bytes and
    # strip, because universal newlines would turn that CR into a row break.
    text = (data / "labels.csv").read_bytes().decode("utf-8").replace("\r", "")
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        if row["split"] == split:
            path = data / row["file"]
            out.append(Sample(path, int(row["label"]), *read_bin(path)))
    if not out:
        msg = f"{data / 'labels.csv'}: no rows with split {split!r}"
        raise ValueError(msg)
    return out


def augment(s: Sample, rng: np.random.Generator, args: argparse.Namespace) -> Events:
    """Shift by a few pixels, drop events, stretch time. Events pushed off the sensor are dropped."""
    keep = rng.random(s.x.size) >= rng.uniform(0, args.drop)
    dx, dy = rng.integers(-args.shift, args.shift + 1, 2)
    x, y = s.x + dx, s.y + dy
    keep &= (x >= 0) & (x < SENSOR) & (y >= 0) & (y < SENSOR)
    stretch = rng.uniform(1 / args.stretch, args.stretch)
    return x[keep], y[keep], s.p[keep], (s.t_us[keep] * stretch).astype(np.int64)


def frames(x: np.ndarray, y: np.ndarray, p: np.ndarray, t_us: np.ndarray, bin_us: int, n_bins: int) -> np.ndarray:
    """(n_bins, 2, 34, 34) event counts; channel 0 = OFF, 1 = ON, as the chip's input map."""
    b = np.minimum(t_us // bin_us, n_bins - 1)
    idx = ((b * 2 + p) * SENSOR + y) * SENSOR + x
    counts = np.bincount(idx, minlength=n_bins * 2 * SENSOR * SENSOR)
    return counts.reshape(n_bins, 2, SENSOR, SENSOR).astype(np.float32)


Events = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def batch(events: list[Events], bin_us: int):  # type: ignore[no-untyped-def]
    import torch

    n_bins = max(1, max(int(e[3].max()) // bin_us + 1 for e in events if e[3].size))
    return torch.from_numpy(np.stack([frames(x, y, p, t, bin_us, n_bins) for x, y, p, t in events]))


def layer_shapes(spec: str) -> list[dict[str, int]]:
    """'8:3:1:2,16:4:1:2,10' (out_channels:kernel:padding:pool per conv, stride 1; a bare number
    is a dense layer) -> per layer its shapes and the DynapCNN core memory it needs."""
    c, h, w = 2, SENSOR, SENSOR
    rows: list[dict[str, int]] = []
    for part in spec.split(","):
        f, k, pad, pool = (int(v) for v in [*part.split(":"), "0", "0", "1"][:4])
        k = k or h  # dense: the kernel is the whole input map
        fy, fx = h + 2 * pad - k + 1, w + 2 * pad - k + 1
        if min(fy, fx) < 1 or fy % pool or fx % pool:
            # A map that is not a multiple of the pool loses its last rows on the chip.
            msg = f"layer {len(rows)} ({part}): conv map {fy}x{fx} is empty or not a multiple of pool {pool}"
            raise ValueError(msg)
        kmem = c * 2 ** (math.ceil(math.log2(k * k)) + math.ceil(math.log2(f)))
        nmem = f * 2 ** (math.ceil(math.log2(fy)) + math.ceil(math.log2(fx)))
        rows.append({"c": c, "f": f, "k": k, "pad": pad, "pool": pool, "fy": fy, "fx": fx, "kmem": kmem, "nmem": nmem})
        c, h, w = f, fy // pool, fx // pool
    return rows


def assign_cores(rows: list[dict[str, int]]) -> list[int]:
    """A core per layer that holds both its kernel and neuron memory (backtracking search)."""
    fits = [[j for j, (k, n) in enumerate(CORES_KI) if r["kmem"] <= k * 1024 and r["nmem"] <= n * 1024] for r in rows]

    def search(i: int, used: tuple[int, ...]) -> tuple[int, ...] | None:
        if i == len(rows):
            return used
        for j in fits[i]:
            if j not in used and (found := search(i + 1, (*used, j))) is not None:
                return found
        return None

    found = search(0, ()) if len(rows) <= len(CORES_KI) else None
    if found is None:
        need = "; ".join(f"layer {i}: kernel {r['kmem']} neuron {r['nmem']}" for i, r in enumerate(rows))
        msg = f"the layers do not fit the 9 DynapCNN cores ({need})"
        raise ValueError(msg)
    return list(found)


def build_model(spec: str, init_gain: float):  # type: ignore[no-untyped-def]
    import torch
    from torch import nn

    class MultiSpike(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v, theta):  # type: ignore[no-untyped-def]
            ctx.save_for_backward(v, theta)
            return torch.floor(torch.relu(v) * (1 / theta))

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            # 1/theta above threshold (where s grows by one per theta), a heavy tail below so
            # that silent neurons still learn.
            v, theta = ctx.saved_tensors
            return grad / (1 + torch.clamp(theta - v, min=0) * (1 / theta)) ** 2 * (1 / theta), None

    class CumMax(torch.autograd.Function):
        """Running max over dim 1; torch.cummax's CPU kernel is ~10x slower on this layout."""

        @staticmethod
        def forward(ctx, z):  # type: ignore[no-untyped-def]
            out = z.clone()
            for t in range(1, z.shape[1]):
                torch.maximum(out[:, t], out[:, t - 1], out=out[:, t])
            ctx.save_for_backward(z[:, 1:] < out[:, :-1])  # step t kept the earlier maximum
            return out

        @staticmethod
        def backward(ctx, grad):  # type: ignore[no-untyped-def]
            (kept,) = ctx.saved_tensors
            g = grad.clone()
            for t in range(g.shape[1] - 1, 0, -1):
                carry = g[:, t] * kept[:, t - 1]
                g[:, t - 1] += carry
                g[:, t] -= carry
            return g

    def fake_quant(w):  # type: ignore[no-untyped-def]
        step = w.detach().abs().max().clamp(min=1e-8) / WEIGHT_LEVELS
        return w + (torch.round(w / step) * step - w).detach(), step

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rows = layer_shapes(spec)
            self.weights = nn.ParameterList()
            for r in self.rows:
                fan_in = r["c"] * r["k"] ** 2
                std = init_gain * (2.0 / fan_in) ** 0.5
                self.weights.append(nn.Parameter(torch.randn(r["f"], r["c"], r["k"], r["k"]) * std))
            self.quantise = False
            self.min_v = 0.0

        def layer_params(self):  # type: ignore[no-untyped-def]
            for w in self.weights:
                if not self.quantise:
                    yield w, torch.tensor(1.0)
                    continue
                wq, step = fake_quant(w)
                # The chip's threshold is an integer number of weight steps.
                yield wq, (torch.round(1.0 / step).clamp(min=1) * step).detach()

        def forward(self, x, state=None):  # type: ignore[no-untyped-def]
            """x: (B, T, 2, 34, 34) cumulative input counts -> (output spike counts (B, n_out),
            logits, total spikes per sample, state). The logits, max over time of the output
            layer's cumulative input in thresholds, rank like the counts but are not floored at
            zero spikes, so classes whose neuron is silent still get a gradient.

            Without a state floor, a multi-spike IAF that resets by subtraction has fired
            N(t) = max(0, max over s <= t of floor(I(s) / theta)) spikes by step t, where I(t) is
            its cumulative input, and a conv of cumulative counts is the cumulative input of the
            next layer: a layer is conv, floor and running max, with no state loop. ``state``
            holds each layer's N at the end of the previous chunk of the same stream.
            """
            B, T = x.shape[:2]
            state = state or [None] * len(self.rows)
            new_state, n_spikes = [], 0.0
            for i, ((w, theta), r) in enumerate(zip(self.layer_params(), self.rows, strict=True)):
                cum = nn.functional.conv2d(x.flatten(0, 1), w, padding=r["pad"]).unflatten(0, (B, T))
                n = CumMax.apply(MultiSpike.apply(cum, theta))
                if state[i] is not None:
                    n = torch.maximum(n, state[i])
                if not self.training:
                    # How deep below zero the state goes, in weight steps: the chip floors it at -2^15.
                    self.min_v = min(self.min_v, float(((cum - n * theta) * self.theta_steps(w) / theta).min()))
                new_state.append(n[:, -1:].detach())
                n_spikes = n_spikes + n[:, -1].sum((1, 2, 3))
                x = n
                logits = CumMax.apply(cum[:, :, :, 0, 0])[:, -1] / theta
                if r["pool"] > 1:
                    x = nn.functional.avg_pool2d(x.flatten(0, 1), r["pool"]).unflatten(0, (B, T)) * r["pool"] ** 2
            return x[:, -1].flatten(1), logits, n_spikes, new_state

        def theta_steps(self, w):  # type: ignore[no-untyped-def]
            step = float(w.detach().abs().max()) / WEIGHT_LEVELS
            return round(1.0 / step) if self.quantise else 1.0 / step

    return Net()


def predict(model, samples: list[Sample], bin_us: int, chunk: int = 64, batch_size: int = 100) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Output spike counts (n, n_out), stepping through time ``chunk`` bins at a time."""
    import torch

    counts = []
    with torch.no_grad():
        for i in range(0, len(samples), batch_size):
            xb = batch([(s.x, s.y, s.p, s.t_us) for s in samples[i : i + batch_size]], bin_us)
            xb = torch.cumsum(xb, 1)
            state = None
            for t0 in range(0, xb.shape[1], chunk):
                out, _, _, state = model(xb[:, t0 : t0 + chunk], state)
            counts.append(out.numpy())  # the counts after the last chunk: the whole recording
    return np.concatenate(counts)


def accuracy(counts: np.ndarray, labels: np.ndarray) -> float:
    return float((counts.argmax(1) == labels).mean())


def split_train(items: list[Sample], frac: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Stratified hold-out: ``frac`` of each class goes to validation."""
    rng = np.random.default_rng(seed)
    labels = np.array([s.label for s in items])
    val = set()
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        val.update(idx[: max(1, round(frac * idx.size))].tolist())
    return [s for i, s in enumerate(items) if i not in val], [s for i, s in enumerate(items) if i in val]


def train(tr: list[Sample], va: list[Sample], args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    model = build_model(args.arch, args.init_gain)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    y_va = np.array([s.label for s in va])
    best: tuple[float, int, dict[str, Any]] = (-1.0, 0, {})
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.quantise = epoch >= args.qat_from
        model.train()
        order = rng.permutation(len(tr))
        loss_sum, correct, spikes = 0.0, 0, 0.0
        for i in range(0, len(order), args.batch):
            group = [tr[j] for j in order[i : i + args.batch]]
            # Warm-up epochs see each sample as one bin (an ANN on event counts: cheap, learns
            # fast); later epochs see time, so that the net works at any grouping of events.
            bin_us = 10**6 if epoch < args.warmup_epochs else int(rng.choice(args.bins_us))
            xb = torch.cumsum(batch([augment(s, rng, args) for s in group], bin_us), 1)
            y = torch.tensor([s.label for s in group])
            counts, logits, n_spk, _ = model(xb)
            loss = torch.nn.functional.cross_entropy(logits / args.loss_temp, y)
            loss = loss + args.spike_reg * (n_spk / 1e4).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(group)
            correct += int((counts.argmax(1) == y).sum())
            spikes += float(n_spk.detach().sum())
        sched.step()
        model.eval()
        accs = [accuracy(predict(model, va, b), y_va) for b in args.eval_bins_us]
        score = min(accs)  # select for the worst bin size: robustness to event grouping
        if model.quantise and score >= best[0]:
            best = (score, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        print(
            f"epoch {epoch + 1}/{args.epochs} loss {loss_sum / len(tr):.3f} train acc {correct / len(tr):.3f} "
            f"spikes/sample {spikes / len(tr):.0f} quantised {model.quantise} val acc "
            + " ".join(f"{b / 1000:g}ms:{a:.3f}" for b, a in zip(args.eval_bins_us, accs, strict=True))
            + f" ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    model.load_state_dict(best[2])
    model.quantise = True
    print(f"selected epoch {best[1] + 1} (worst-bin validation accuracy {best[0]:.3f})", flush=True)
    return model, best[1] + 1


def per_class(counts: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    pred = counts.argmax(1)
    return {LABELS[c]: round(float((pred[labels == c] == c).mean()), 4) for c in np.unique(labels)}


def int_list(value: str) -> list[int]:
    return [int(float(v) * 1000) for v in value.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="N-MNIST folder with labels.csv")
    ap.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    ap.add_argument("--arch", default="8:3:1:2,16:4:1:2,32:3:1:2,10", help="conv F:K:PAD:POOL,... ; N = dense")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--warmup-epochs", type=int, default=4, help="first epochs with one bin per sample")
    ap.add_argument("--qat-from", type=int, default=4, help="epoch from which weights are fake-quantised")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--loss-temp", type=float, default=2.0, help="cross entropy on logits / this")
    ap.add_argument("--spike-reg", type=float, default=0.0, help="penalty per 10k spikes per sample")
    ap.add_argument("--init-gain", type=float, default=0.5, help="initial weights: this times Kaiming's std")
    ap.add_argument("--bins-ms", type=int_list, default=int_list("10,20,50"), help="training bin sizes (ms)")
    ap.add_argument("--eval-bins-ms", type=int_list, default=int_list("10"), help="validation bin sizes (ms)")
    ap.add_argument("--final-bins-ms", type=int_list, default=int_list("1,5,20"), help="bins for the report")
    ap.add_argument("--shift", type=int, default=3, help="max random translation (pixels)")
    ap.add_argument("--drop", type=float, default=0.2, help="max event dropout fraction")
    ap.add_argument("--stretch", type=float, default=1.2, help="max time stretch factor")
    ap.add_argument("--val-frac", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from models.recipes.nmnist_eval import fit_temperature, write_bundle

    args.bins_us, args.eval_bins_us = args.bins_ms, args.eval_bins_ms
    rows = layer_shapes(args.arch)
    cores = assign_cores(rows)
    for i, (r, core) in enumerate(zip(rows, cores, strict=True)):
        print(f"layer {i}: {r} -> core {core} {CORES_KI[core]} Ki", flush=True)
    tr, va = split_train(load(args.data, "train"), args.val_frac, args.seed)
    te = load(args.data, "test")
    print(f"{len(tr)} train, {len(va)} validation, {len(te)} test samples", flush=True)
    t0 = time.perf_counter()
    model, epoch = train(tr, va, args)
    minutes = (time.perf_counter() - t0) / 60
    y_va, y_te = np.array([s.label for s in va]), np.array([s.label for s in te])
    val = {b: predict(model, va, b) for b in args.final_bins_ms}
    test = {b: predict(model, te, b) for b in args.final_bins_ms}
    for b in args.final_bins_ms:
        print(f"bin {b / 1000:g} ms: validation {accuracy(val[b], y_va):.3f} test {accuracy(test[b], y_te):.3f}")
    print(f"lowest neuron state reached: {model.min_v:.0f} weight steps (the chip floors at -32768)")
    fine = min(args.final_bins_ms)
    temperature = round(fit_temperature(val[fine], y_va), 3)
    meta = {
        "recipe": "models/recipes/nmnist.py",
        "version": "0.1.0",
        "arch": args.arch,
        "cores": cores,
        "kernel_memory": [r["kmem"] for r in rows],
        "neuron_memory": [r["nmem"] for r in rows],
        **{k: getattr(args, k) for k in ("epochs", "warmup_epochs", "qat_from", "batch", "lr", "loss_temp")},
        **{k: getattr(args, k) for k in ("spike_reg", "init_gain", "shift", "drop", "stretch", "val_frac", "seed")},
        "bins_us": args.bins_us,
        "selected_epoch": epoch,
        "lowest_state_steps": round(model.min_v),
        "train_minutes": round(minutes, 1),
        "torch_validation_accuracy": {f"{b}us": round(accuracy(val[b], y_va), 4) for b in args.final_bins_ms},
    }
    validation = [
        {
            "dataset": f"N-MNIST test samples 60001-60100 less one per digit ({len(te)} files, shared/data/dvs/nmnist)",
            "protocol": f"trained on {len(tr)} train samples, epoch chosen on {len(va)} held-out train samples",
            "chip": f"torch simulation, {fine} us bins, 8-bit fake-quantised weights",
            "accuracy": round(accuracy(test[fine], y_te), 4),
            "details": per_class(test[fine], y_te),
            "command": "python -m models.recipes.nmnist --data ../shared/data/dvs/nmnist --out models/zoo/nmnist",
        }
    ]
    write_bundle(args.out, model, temperature, meta, validation)
    print(f"wrote {args.out} in {minutes:.1f} min of training; softmax temperature {temperature:.3g}")


if __name__ == "__main__":
    main()
