"""Leave-one-speaker-out accuracy of kws-digits on the emulated chip, written into the manifest.

    python -m models.recipes.kws_digits_report --data ../shared/data/audio/fsdd \\
        --folds /tmp/kws --bundle models/zoo/kws-digits

For each fold bundle ``<folds>/fold-<speaker>`` (trained without that speaker by
``kws_digits_loso.sh``) it replays that speaker's 500 recordings through the real
``spikewire replay`` command (the emulated ``snp``, 6-bit weights), with analog mismatch
off and on (seeds 1-3), and records the figures in the shipped bundle's manifest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from statistics import mean

import tomli_w

SPEAKERS = ("george", "nicolas", "theo", "yweweler")


def replay(files: list[Path], bundle: Path, labels: Path, mismatch: str, seed: int) -> dict:  # type: ignore[type-arg]
    cmd = [
        sys.executable,
        "-m",
        "runtime.cli",
        "--log-level",
        "ERROR",
        "replay",
        *map(str, files),
        "--model",
        str(bundle),
        "--labels",
        str(labels),
        "--label-column",
        "digit",
        "--speed",
        "max",
        "--mismatch",
        mismatch,
        "--seed",
        str(seed),
        "--json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--folds", type=Path, required=True)
    ap.add_argument("--bundle", type=Path, required=True, help="shipped bundle whose manifest gets the figures")
    args = ap.parse_args()
    labels = args.data / "labels.csv"
    per_fold: dict[str, dict[str, float]] = {}
    for spk in SPEAKERS:
        files = sorted(args.data.glob(f"*_{spk}_*.wav"))
        bundle = args.folds / f"fold-{spk}"
        off = replay(files, bundle, labels, "off", 0)
        on = [replay(files, bundle, labels, "on", seed)["accuracy"] for seed in (1, 2, 3)]
        per_fold[spk] = {
            "accuracy": off["accuracy"],
            "accuracy_mismatch_mean": mean(on),
            "files": off["files"],
            "energy_uj_per_decision": off["energy_uj_per_decision"],
            "rtf": off["rtf"],
        }
        print(f"{spk:10} {off['accuracy']:.3f} (mismatch: {', '.join(f'{a:.3f}' for a in on)})", flush=True)
    acc = mean(f["accuracy"] for f in per_fold.values())
    acc_mm = mean(f["accuracy_mismatch_mean"] for f in per_fold.values())
    print(f"mean       {acc:.3f} (mismatch {acc_mm:.3f})")
    manifest_path = args.bundle / "manifest.toml"
    manifest = tomllib.loads(manifest_path.read_text())
    manifest["validation"] = [
        {
            "dataset": "FSDD, speakers george, nicolas, theo, yweweler (2000 recordings)",
            "protocol": (
                "leave one speaker out: 4 models each trained on 3 speakers, scored on the 4th; mean of the 4 folds"
            ),
            "chip": "snp (6-bit weights, mismatch off)",
            "accuracy": round(acc, 4),
            "details": {spk: round(f["accuracy"], 4) for spk, f in per_fold.items()},
            "command": (
                "bash models/recipes/kws_digits_loso.sh ../shared/data/audio/fsdd /tmp/kws && "
                "python -m models.recipes.kws_digits_report --data ../shared/data/audio/fsdd "
                "--folds /tmp/kws --bundle models/zoo/kws-digits"
            ),
        },
        {
            "dataset": "FSDD, same folds",
            "protocol": "as above, analog mismatch on (profile sigmas), mean over seeds 1-3",
            "chip": "snp (6-bit weights, mismatch on)",
            "accuracy": round(acc_mm, 4),
            "details": {spk: round(f["accuracy_mismatch_mean"], 4) for spk, f in per_fold.items()},
            "command": "as above",
        },
    ]
    manifest_path.write_text(tomli_w.dumps(manifest))
    print(f"wrote {manifest_path}")


if __name__ == "__main__":
    main()
