#!/usr/bin/env bash
# Leave-one-speaker-out folds plus the shipped model (trained on all four speakers).
# Two queues, one torch thread each, for a 2-core machine. About 15-25 min per run there.
#   bash models/recipes/kws_digits_loso.sh ../shared/data/audio/fsdd /tmp/kws
set -euo pipefail
data=${1:?FSDD folder}
out=${2:?output folder}
epochs=${EPOCHS:-18}
mkdir -p "$out"
run() { python -m models.recipes.kws_digits --data "$data" --epochs "$epochs" "$@"; }
(
  run --out "$out/all" > "$out/all.log" 2>&1
  run --holdout george --out "$out/fold-george" > "$out/fold-george.log" 2>&1
  run --holdout yweweler --out "$out/fold-yweweler" > "$out/fold-yweweler.log" 2>&1
) &
(
  run --holdout theo --out "$out/fold-theo" > "$out/fold-theo.log" 2>&1
  run --holdout nicolas --out "$out/fold-nicolas" > "$out/fold-nicolas.log" 2>&1
) &
wait
