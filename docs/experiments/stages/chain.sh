#!/bin/bash
# The stages experiment: per fold, the default's L1 stage, then one 100-epoch branch of each objective from it,
# then each scored at chroma scales 0.8 .. 1.5 on the fold's own photos. About 45 minutes a fold on 2 CPU cores.
# usage (from a checkout): bash docs/experiments/stages/chain.sh OUT_DIR
set -e
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?an output folder}
mkdir -p "$out" && cat registry.toml "$here/models.toml" > "$out/reg.toml"
export ZOO_REGISTRY=$out/reg.toml
for f in 1 2 0; do
  zoo train x-l1 --data sample-fold$f-train --epochs 100 --out "$out/runs/f$f-l1" --no-progress
  for v in ciede gan perceptual l1branch; do
    zoo train x-$v --init "$out/runs/f$f-l1/generator.safetensors" --data sample-fold$f-train --epochs 100 \
      --out "$out/runs/f$f-$v" --no-progress
    python "$here/scales.py" x-$v "$out/runs/f$f-$v" sample-fold$f "$out/score-f$f-$v.json"
  done
done
cd "$out" && python "$here/summ.py" 1 2 0
