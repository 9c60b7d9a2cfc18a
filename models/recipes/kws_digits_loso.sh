#!/usr/bin/env bash
# The shipped kws-digits model (trained on all four FSDD speakers) and its four
# leave-one-speaker-out folds, then their accuracy on the emulated chip.
# Two queues, one torch thread each, for a 2-core machine: about 45 minutes there.
#   bash models/recipes/kws_digits_loso.sh ../shared/data/audio/fsdd /tmp/kws
# Then copy /tmp/kws/all to models/zoo/kws-digits and run
#   python -m models.recipes.kws_digits_report --data ../shared/data/audio/fsdd --folds /tmp/kws --bundle models/zoo/kws-digits
set -euo pipefail
data=${1:?FSDD folder}
out=${2:?output folder}
mkdir -p "$out"
run() { python -m models.recipes.kws_digits --data "$data" "$@"; }
(
  run --out "$out/all" > "$out/all.log" 2>&1
  run --holdout nicolas --out "$out/fold-nicolas" > "$out/fold-nicolas.log" 2>&1
) &
(
  run --holdout george --out "$out/fold-george" > "$out/fold-george.log" 2>&1
  run --holdout yweweler --out "$out/fold-yweweler" > "$out/fold-yweweler.log" 2>&1
  run --holdout theo --out "$out/fold-theo" > "$out/fold-theo.log" 2>&1
) &
wait
