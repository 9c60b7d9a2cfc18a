"""Write the N-MNIST bundle, and score it on the emulated ``dynapcnn`` chip one recording at a time.

    python -m models.recipes.nmnist_eval --data ../shared/data/dvs/nmnist --bundle models/zoo/nmnist
    python -m models.recipes.nmnist_eval ... --torch-bin-ms 1      # also the torch simulation, per sample
    python -m models.recipes.nmnist_eval ... --update-manifest     # record the figure in [[validation]]

Each recording is fed as the runtime feeds it: time rebased so the first event is at 0, no
pre-processing, channel ``(p * 34 + y) * 34 + x`` (OFF = 0, ON = 1), one ``SpikeBatch`` that
ends one microsecond after the last event, the chip reset in between. The class is the
argmax of the output spike counts over the whole recording (ties: the lowest class).
"""

# mypy: allow-untyped-calls
from __future__ import annotations

import argparse
import math
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from models.recipes.nmnist import LABELS, SENSOR, Sample, accuracy, load, per_class, split_train

CMD = "python -m models.recipes.nmnist_eval --data ../shared/data/dvs/nmnist --bundle models/zoo/nmnist"


def fit_temperature(counts: np.ndarray, labels: np.ndarray) -> float:
    """Softmax temperature on spike counts minimising validation NLL (grid search in log space)."""
    best_t, best_nll = 1.0, math.inf
    for t in np.exp(np.linspace(math.log(0.1), math.log(100), 200)):
        z = counts / t
        z = z - z.max(1, keepdims=True)
        nll = float(-(z[np.arange(len(labels)), labels] - np.log(np.exp(z).sum(1))).mean())
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    return best_t


def to_convnet(model):  # type: ignore[no-untyped-def]
    """The trained net as a ``ConvNet``: the fake-quantised weights, so the compiler's max-abs
    8-bit rounding gives back exactly the integers trained with."""
    from models.convnet import ConvLayer, ConvNet

    layers, shape = [], (2, SENSOR, SENSOR)
    for i, ((w, theta), r) in enumerate(zip(model.layer_params(), model.rows, strict=True)):
        theta = float(theta)
        layer = ConvLayer(
            name=f"layer{i}",
            in_shape=shape,
            weight=w.detach().numpy().astype(np.float64),
            stride=(1, 1),
            padding=(r["pad"], r["pad"]),
            threshold=theta,
            v_min=-math.inf,  # trained without a floor: the chip keeps only its own (-2^15 steps)
            pool=r["pool"],
        )
        layers.append(layer)
        shape = layer.out_shape
    return ConvNet(input_shape=(2, SENSOR, SENSOR), layers=tuple(layers))


def write_bundle(out: Path, model, temperature: float, meta: dict[str, Any], validation: list[dict[str, Any]]) -> None:  # type: ignore[no-untyped-def]
    import tomli_w

    from models.nir_conv import write_convnet

    out.mkdir(parents=True, exist_ok=True)
    write_convnet(to_convnet(model), out / "model.nir")
    manifest = {
        "labels": LABELS,
        "model": {
            "name": "nmnist",
            "version": meta["version"],
            "description": "N-MNIST digits 0-9 (34x34 saccade recordings), IAF conv net, spike-count readout",
            "modality": "dvs",
            "target_chip": "dynapcnn",
            "license": "CC-BY-SA-4.0 (trained on N-MNIST)",
        },
        "encoder": {"polarity": "both", "pool": 1},
        "readout": {"kind": "spike_count", "temperature": temperature},
        "training": meta,
        "validation": validation,
    }
    (out / "manifest.toml").write_text(tomli_w.dumps(manifest), encoding="utf-8")


def chip_counts(bundle: Path, samples: list[Sample]) -> tuple[np.ndarray, dict[str, float]]:
    """Output spike counts (n, classes) on the emulated chip, and totals for the report."""
    from models.nir_conv import read_convnet
    from runtime.chips.dynapcnn import DynapcnnChip, compile_convnet
    from runtime.chips.profile import ConvCoreProfile, load_profile
    from sensors.blocks import SpikeBatch

    net = read_convnet(bundle / "model.nir")
    profile = load_profile("dynapcnn")
    if not isinstance(profile, ConvCoreProfile):
        msg = f"chip profile 'dynapcnn' is a {type(profile).__name__}, not a conv-core profile"
        raise TypeError(msg)
    compiled = compile_convnet(net, profile)
    print("\n".join(compiled.report.lines()), flush=True)
    chip = DynapcnnChip(compiled)
    counts = np.zeros((len(samples), net.n_outputs), np.int64)
    layer_spikes = np.zeros(len(net.layers))
    events = 0
    t0 = time.perf_counter()
    for i, s in enumerate(samples):
        chip.reset()
        ch = ((s.p * SENSOR + s.y) * SENSOR + s.x).astype(np.int32)
        t_us = s.t_us.astype(np.int64)
        batch = SpikeBatch(s.path.name, t_us, ch, 2 * SENSOR * SENSOR, 0, int(t_us[-1]) + 1, 0)
        result = chip.run(batch)
        counts[i] = np.bincount(result.spike_ch, minlength=net.n_outputs)
        layer_spikes += chip.layer_spikes
        events += len(batch)
    totals = {
        "seconds": time.perf_counter() - t0,
        "events_per_sample": events / len(samples),
        **{f"layer{i}_spikes_per_sample": float(n) / len(samples) for i, n in enumerate(layer_spikes)},
    }
    return counts, totals


def torch_counts(bundle: Path, samples: list[Sample], bin_us: int) -> np.ndarray:
    """The same weights in the recipe's torch simulation, with ``bin_us`` time bins."""
    import torch

    from models.nir_conv import read_convnet
    from models.recipes.nmnist import build_model, predict

    manifest = tomllib.loads((bundle / "manifest.toml").read_text(encoding="utf-8"))
    model = build_model(manifest["training"]["arch"], 1.0)
    net = read_convnet(bundle / "model.nir")
    with torch.no_grad():
        for p, layer in zip(model.weights, net.layers, strict=True):
            p.copy_(torch.from_numpy(layer.weight))
    model.quantise = True  # already on the 8-bit grid: the same max-abs step gives the same integers
    model.eval()
    return predict(model, samples, bin_us)


def update_manifest(bundle: Path, entry: dict[str, object]) -> None:
    import tomli_w

    path = bundle / "manifest.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    keep = [v for v in data.get("validation", []) if not str(v.get("chip", "")).startswith("dynapcnn")]
    data["validation"] = [entry, *keep]
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="N-MNIST folder with labels.csv")
    ap.add_argument("--bundle", type=Path, default=Path("models/zoo/nmnist"))
    ap.add_argument("--split", choices=["test", "val"], default="test", help="val: the recipe's held-out part")
    ap.add_argument("--seed", type=int, default=0, help="the recipe's seed (for --split val)")
    ap.add_argument("--val-frac", type=float, default=0.1, help="the recipe's --val-frac (for --split val)")
    ap.add_argument("--torch-bin-ms", type=float, default=None, help="also run the torch simulation at this bin")
    ap.add_argument("--update-manifest", action="store_true", help="write the chip figure into [[validation]]")
    args = ap.parse_args()
    samples = (
        load(args.data, "test")
        if args.split == "test"
        else split_train(load(args.data, "train"), args.val_frac, args.seed)[1]
    )
    labels = np.array([s.label for s in samples])
    counts, totals = chip_counts(args.bundle, samples)
    acc = accuracy(counts, labels)
    silent = int((counts.max(1) == 0).sum())
    ties = int(((counts == counts.max(1, keepdims=True)).sum(1) > 1).sum()) - silent
    print(f"dynapcnn emulator, {args.split}: accuracy {acc:.4f} ({len(samples)} samples)")
    print(f"per class: {per_class(counts, labels)}")
    print(
        f"no output spike: {silent} samples; tied classes: {ties}; "
        + ", ".join(f"{k} {v:.1f}" for k, v in totals.items())
    )
    if args.torch_bin_ms is not None:
        tc = torch_counts(args.bundle, samples, int(args.torch_bin_ms * 1000))
        agree = float((tc.argmax(1) == counts.argmax(1)).mean())
        print(
            f"torch {args.torch_bin_ms:g} ms bins: accuracy {accuracy(tc, labels):.4f}, same class as chip {agree:.4f}"
        )
        print(f"mean |count difference| per class {np.abs(tc - counts).mean():.3f}")
    if args.update_manifest:
        test_set = f"N-MNIST test samples 60001-60100 less one per digit ({len(samples)} files, shared/data/dvs/nmnist)"
        entry = {
            "dataset": test_set if args.split == "test" else f"N-MNIST held-out train samples ({len(samples)} files)",
            "protocol": "whole recording, time rebased to its first event, no pre-processing; argmax of spike counts",
            "chip": "dynapcnn (emulator, 1 us steps, 8-bit weights)",
            "accuracy": round(acc, 4),
            "details": {**per_class(counts, labels), "silent_samples": silent},
            "command": CMD + (" --split val" if args.split == "val" else ""),
        }
        update_manifest(args.bundle, entry)
        print(f"updated {args.bundle / 'manifest.toml'}")


if __name__ == "__main__":
    main()
