#!/usr/bin/env bash
# The committed baseline results under results/bench/ (run from the repository root).
# Long: run with nohup. GP is slow (see results/bench/README.md), so it runs with fewer seeds.
set -euo pipefail
FALCON=${FALCON:-../shared/data/falcon/sources}
OUT=results/bench
mkdir -p "$OUT"

# Falcon tables: leave-one-model-out (train on 17, evaluate the 18th), 10 seeds, budget 200.
autoconf bench --train "falcon:$FALCON" --eval "falcon:$FALCON" \
  --samplers random,tpe,grid,transfer --repeats 10 --budget 200 \
  --json "$OUT/falcon.json" --plot "$OUT/falcon-regret.png" > "$OUT/falcon.md"

# GP alone, fewer seeds (a run takes minutes on this machine).
autoconf bench --train "falcon:$FALCON" --eval "falcon:$FALCON" \
  --samplers gp --repeats "${GP_REPEATS:-1}" --budget 200 --models "${GP_MODELS:-bert-base,resnet-152}" \
  --json "$OUT/falcon-gp.json" > "$OUT/falcon-gp.md"

# The simulated zoo on gpu-default: leave-one-family-out (a model is trained on every other
# family, never on its own family's sizes or perturbed copies), 5 seeds (3 for tpe, 2 for grid: time), budget 200.
autoconf bench --train sim:zoo --eval sim:zoo \
  --samplers random,tpe,grid,transfer --repeats 5 --sampler-repeats tpe=3,grid=2 --budget 200 \
  --json "$OUT/zoo.json" --plot "$OUT/zoo-regret.png" > "$OUT/zoo.md"
