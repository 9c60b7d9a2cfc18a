"""Training recipe: spoken digits (FSDD) for the ``snp`` chip. Needs the ``train`` extra.

    python -m models.recipes.kws_digits --data ../shared/data/audio/fsdd --out models/zoo/kws-digits
    python -m models.recipes.kws_digits --data ... --holdout theo --out /tmp/fold-theo   # one LOSO fold

The network is trained in exactly the discrete time the chip emulates (1 ms ticks, see
``models.network``): input spikes binned by ``t_us // tick_us``, one tick of delay per
synaptic layer, reset to zero, weights fake-quantised to the chip's 6 bits per layer with
the same max-abs rule ``compile`` uses, and the same readout (mean output membrane over the
stream). What is trained is therefore what runs, up to float rounding.

Speaker independence comes from augmentation: random speed (0.85-1.15, which shifts pitch
and formants like another vocal tract), gain and background noise, redrawn every epoch.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import tomli_w

from models.network import Network, Population, Projection
from models.nir_io import write_network
from models.recipes.snn_torch import fake_quant as quantise
from models.recipes.snn_torch import spike
from sensors.audio.encoder import AudioEncoderConfig, encode_signal

TICK_US = 1000
TAU_SYN_S = 5e-3
TAU_MEM_S = 20e-3
WEIGHT_BITS = 6
LABELS = [str(d) for d in range(10)]


@dataclasses.dataclass
class Item:
    path: Path
    label: int
    speaker: str
    audio: np.ndarray


def load_fsdd(data: Path) -> list[Item]:
    items = []
    with (data / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            audio, rate = sf.read(data / row["file"], dtype="float32")
            if rate != 8000:
                msg = f"{row['file']}: expected 8000 Hz, got {rate}"
                raise ValueError(msg)
            items.append(Item(data / row["file"], int(row["digit"]), row["speaker"], audio))
    return items


def augment(x: np.ndarray, rng: np.random.Generator, speed_range: tuple[float, float] = (0.85, 1.15)) -> np.ndarray:
    speed = rng.uniform(*speed_range)
    n = max(16, int(len(x) / speed))
    y = np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)
    y *= 10 ** (rng.uniform(-12, 6) / 20)
    rms = float(np.sqrt(np.mean(y**2))) + 1e-9
    y += (rms * 10 ** (-rng.uniform(15, 45) / 20) * rng.standard_normal(n)).astype(np.float32)
    return np.clip(y, -1, 1)


def augment_spikes(dense: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shift the spectrum by up to one channel (another vocal tract) and drop 10 % of spikes."""
    shift = int(rng.integers(-1, 2))
    if shift:
        dense = np.roll(dense, shift, axis=1)
        dense[:, 0 if shift > 0 else -1] = 0
    return dense * (rng.random(dense.shape) > 0.1)


def to_ticks(x: np.ndarray, cfg: AudioEncoderConfig) -> np.ndarray:
    """Dense (ticks, channels) spike counts, binned exactly as the chip bins events."""
    t_us, ch = encode_signal(x, cfg)
    n_ticks = len(x) * 1_000_000 // int(cfg.rate_hz) // cfg.frame_us * cfg.frame_us // TICK_US
    dense = np.zeros((max(n_ticks, 1), cfg.n_channels), np.float32)
    keep = t_us // TICK_US < n_ticks
    np.add.at(dense, (t_us[keep] // TICK_US, ch[keep]), 1.0)
    return dense


def build_model(  # type: ignore[no-untyped-def]
    n_in: int, hidden: int, n_out: int, init_in: float = 0.3, dropout: float = 0.0, readout: str = "mean"
):
    import torch
    from torch import nn

    dt = TICK_US * 1e-6
    alpha, beta = math.exp(-dt / TAU_SYN_S), math.exp(-dt / TAU_MEM_S)

    def readout_weights(T: int, lengths):  # type: ignore[no-untyped-def]
        # Impulse response of I -> v: h[k] = (1 - beta) * sum_j alpha^j beta^(k - j); H = cumsum(h).
        k = torch.arange(T, dtype=torch.float64)
        if abs(alpha - beta) > 1e-12:
            h = (1 - beta) * (beta ** (k + 1) - alpha ** (k + 1)) / (beta - alpha)
        else:
            h = (1 - beta) * (k + 1) * beta**k
        H = torch.cumsum(h, 0)
        t = torch.arange(T)[:, None]
        lag = lengths[None, :].long() - 1 - t  # ticks from input t to the end of the window
        w = torch.where(lag >= 0, H[lag.clamp(min=0)], torch.zeros((), dtype=torch.float64))
        return (w / lengths[None, :].double()).float()

    def membrane_max(a_out, mask):  # type: ignore[no-untyped-def]
        # v[t] = sum_k h[k] a[t - k]: a causal convolution with the readout's impulse response,
        # truncated where it has decayed below 1e-7 of its peak.
        T, B, n = a_out.shape
        k = torch.arange(min(T, 400), dtype=torch.float64)
        h = ((1 - beta) * (beta ** (k + 1) - alpha ** (k + 1)) / (beta - alpha)).float()
        x = a_out.permute(1, 2, 0).reshape(B * n, 1, T)
        v = torch.nn.functional.conv1d(torch.nn.functional.pad(x, (len(h) - 1, 0)), h.flip(0).view(1, 1, -1))
        v = v.view(B, n, T).permute(2, 0, 1)
        return torch.where(mask[:, :, None] > 0, v, torch.full_like(v, -1e9)).amax(0)

    class KwsSnn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w_in = nn.Parameter(torch.randn(n_in, hidden) * init_in)
            self.w_rec = nn.Parameter(torch.randn(hidden, hidden) * 0.03)
            self.w_out = nn.Parameter(torch.randn(hidden, n_out) * 0.1)
            # Output membranes average ~0.01-0.1: start the softmax temperature there, or the
            # logits are nearly flat and learning stalls.
            self.log_temp = nn.Parameter(torch.tensor(-4.0))
            self.quantise = False

        def weights(self):  # type: ignore[no-untyped-def]
            ws = (self.w_in, self.w_rec, self.w_out)
            return tuple(quantise(w, WEIGHT_BITS) for w in ws) if self.quantise else ws

        def forward(self, x, lengths):  # type: ignore[no-untyped-def]
            # x: (T, B, n_in). Returns (mean output membrane (B, n_out), hidden spike count).
            w_in, w_rec, w_out = self.weights()
            T, B, _ = x.shape
            drive = x @ w_in
            cur = torch.zeros(B, hidden)
            v = torch.zeros(B, hidden)
            s = torch.zeros(B, hidden)
            spikes = []
            for t in range(T):
                cur = alpha * cur + drive[t] + s @ w_rec
                v = beta * v + (1 - beta) * cur
                s = spike(v - 1.0)
                v = v * (1 - s.detach())
                if self.training and dropout > 0:
                    # Drop a spike's effect downstream only; the neuron itself did fire and reset.
                    s = s * (torch.rand_like(s) > dropout) / (1 - dropout)
                spikes.append(s)
            S = torch.stack(spikes)
            mask = (torch.arange(T)[:, None] < lengths[None, :]).float()
            # Hidden spikes of tick t reach the readout at tick t + 1, as on the chip.
            a_out = torch.cat([torch.zeros(1, B, n_out), S[:-1] @ w_out])
            # The readout is linear and time-invariant, so its mean membrane over the first
            # L ticks is a weighted sum of its inputs (exactly what a T-step loop computes).
            counts = (S * mask[:, :, None]).sum(0)
            if readout == "max":
                return membrane_max(a_out, mask), counts
            return torch.einsum("tb,tbo->bo", readout_weights(T, lengths), a_out), counts

    return KwsSnn()


def batches(seqs: list[np.ndarray], labels: np.ndarray, size: int, rng: np.random.Generator | None):  # type: ignore[no-untyped-def]
    import torch

    order = np.argsort([len(s) for s in seqs])  # similar lengths together: little padding
    groups = [order[i : i + size] for i in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(groups)
    for g in groups:
        T = max(len(seqs[i]) for i in g)
        x = np.zeros((T, len(g), seqs[0].shape[1]), np.float32)
        for j, i in enumerate(g):
            x[: len(seqs[i]), j] = seqs[i]
        yield (
            torch.from_numpy(x),
            torch.tensor([len(seqs[i]) for i in g], dtype=torch.float32),
            torch.from_numpy(labels[g]),
        )


def evaluate(model, seqs: list[np.ndarray], labels: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    import torch

    correct = 0
    with torch.no_grad():
        for x, lengths, y in batches(seqs, labels, 64, None):
            out, _ = model(x, lengths)
            correct += int((out.argmax(1) == y).sum())
    return correct / len(labels)


def train(items: list[Item], test: list[Item], cfg: AudioEncoderConfig, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(args.seed)
    model = build_model(cfg.n_channels, args.hidden, len(LABELS), args.init_in, args.dropout, args.readout)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    y_train = np.array([it.label for it in items])
    test_seqs = [to_ticks(it.audio, cfg) for it in test]
    y_test = np.array([it.label for it in test])
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.quantise = epoch >= args.epochs // 3
        seqs = [to_ticks(augment(it.audio, rng, args.speed_range), cfg) for it in items]
        if args.spike_aug:
            seqs = [augment_spikes(d, rng) for d in seqs]
        model.train()
        loss_sum, n_spk, n_ticks = 0.0, 0.0, 0.0
        for x, lengths, y in batches(seqs, y_train, args.batch, rng):
            out, counts = model(x, lengths)
            rate = counts / lengths[:, None]  # spikes per tick per neuron
            loss = torch.nn.functional.cross_entropy(out / model.log_temp.exp(), y)
            loss = loss + args.rate_reg * (torch.relu(rate - 0.05) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            loss_sum += float(loss.detach()) * len(y)
            n_spk += float(counts.detach().sum())
            n_ticks += float(lengths.sum()) * args.hidden
        sched.step()
        model.eval()
        acc = evaluate(model, test_seqs, y_test) if test else float("nan")
        print(
            f"epoch {epoch + 1}/{args.epochs} loss {loss_sum / len(items):.3f} "
            f"hidden rate {1000 * n_spk / n_ticks:.1f} Hz quantised {model.quantise} "
            f"held-out acc {acc:.3f} ({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )
    model.quantise = True
    return model, (evaluate(model, test_seqs, y_test) if test else None)


def export(model, cfg: AudioEncoderConfig, out: Path, hidden: int, meta: dict) -> None:  # type: ignore[no-untyped-def]
    def pop(name: str, n: int, spiking: bool) -> Population:
        full = lambda v: np.full(n, v, np.float64)  # noqa: E731
        thr = full(1.0) if spiking else full(np.inf)
        return Population(name, n, full(TAU_SYN_S), full(TAU_MEM_S), full(1.0), full(0.0), thr, full(0.0))

    w = [p.detach().numpy().astype(np.float64) for p in (model.w_in, model.w_rec, model.w_out)]
    net = Network(
        n_inputs=cfg.n_channels,
        populations=(pop("hidden", hidden, True), pop("out", len(LABELS), False)),
        projections=(
            Projection("fc_in", "input", "hidden", w[0].T),
            Projection("fc_rec", "hidden", "hidden", w[1].T),
            Projection("fc_out", "hidden", "out", w[2].T),
        ),
        output="out",
    )
    out.mkdir(parents=True, exist_ok=True)
    write_network(net, out / "model.nir")
    manifest = {
        "labels": LABELS,
        "model": {
            "name": "kws-digits",
            "version": meta["version"],
            "description": "Spoken digits 0-9 (English), recurrent CuBa-LIF, membrane readout",
            "modality": "audio",
            "target_chip": "snp",
            "license": "CC-BY-SA-4.0 (trained on FSDD)",
        },
        "encoder": {k: v for k, v in dataclasses.asdict(cfg).items() if v is not None},
        "readout": {
            "kind": "membrane_max" if meta.get("readout") == "max" else "membrane_mean",
            "temperature": float(model.log_temp.detach().exp()),
        },
        "training": meta,
    }
    (out / "manifest.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="FSDD folder with labels.csv")
    ap.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    ap.add_argument("--holdout", default=None, help="speaker to leave out (a LOSO fold); default: train on all")
    ap.add_argument("--epochs", type=int, default=18)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--rate-reg", type=float, default=1.0)
    ap.add_argument("--clip", type=float, default=1.0, help="gradient norm clip")
    ap.add_argument("--spike-aug", action="store_true", help="channel shift and spike dropout")
    ap.add_argument("--init-in", type=float, default=0.3, help="std of the initial input weights")
    ap.add_argument(
        "--speed-range",
        type=lambda v: tuple(float(x) for x in v.split(",")),
        default=(0.85, 1.15),
        help="speed perturbation range, e.g. 0.8,1.25",
    )
    ap.add_argument("--dropout", type=float, default=0.0, help="hidden spike dropout while training")
    ap.add_argument("--readout", choices=["mean", "max"], default="mean", help="membrane mean or max over the stream")
    ap.add_argument(
        "--encoder", action="append", default=[], metavar="KEY=VALUE", help="AudioEncoderConfig field, e.g. f_lo_hz=250"
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    fields = {f.name: f.type for f in dataclasses.fields(AudioEncoderConfig)}
    overrides = {}
    for item in args.encoder:
        key, _, value = item.partition("=")
        if key not in fields:
            ap.error(f"--encoder {key}: not an AudioEncoderConfig field ({', '.join(fields)})")
        overrides[key] = int(value) if key in ("n_channels", "n_stages", "frame_us") else float(value)
    cfg = AudioEncoderConfig(**overrides)
    items = load_fsdd(args.data)
    train_items = [it for it in items if it.speaker != args.holdout]
    test_items = [it for it in items if it.speaker == args.holdout]
    print(f"{len(train_items)} training, {len(test_items)} held-out files (speaker {args.holdout})", flush=True)
    model, acc = train(train_items, test_items, cfg, args)
    meta = {
        "recipe": "models/recipes/kws_digits.py",
        "version": "0.1.0",
        "holdout": args.holdout or "none",
        "epochs": args.epochs,
        "hidden": args.hidden,
        "seed": args.seed,
        "lr": args.lr,
        "speed_range": list(args.speed_range),
        "spike_aug": args.spike_aug,
        "init_in": args.init_in,
        "dropout": args.dropout,
        "readout": args.readout,
        "encoder_overrides": " ".join(args.encoder) or "none",
        "torch_heldout_accuracy": acc if acc is not None else "n/a",
    }
    export(model, cfg, args.out, args.hidden, meta)
    print(f"wrote {args.out} (held-out accuracy in torch, quantised: {acc})")


if __name__ == "__main__":
    main()
