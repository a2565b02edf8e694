#!/bin/sh
# Short checks that each recipe fix of issue 19 was a cause, at a small size (width 128, 2 layers,
# window = chunk = 64, sequences of 512, batches of 8, 150 steps = 614,400 tokens), one run per line:
#   full-stream   full attention, windows at random offsets of the stream (the old recipe: crosses documents)
#   full-docs     full attention, whole pieces of one document (the new recipe)
#   swa-docs      sliding window, new recipe: full attention must be no worse at positions 0..W
#   full-docs-qk  full attention, new recipe with q/k RMSNorm on (the old setting)
# Validation (held-out pieces of the training sources) by position bucket is in each OUT/val.jsonl.
# Usage: sh train/pilot/recipe_checks.sh OUTDIR [PYTHON]
set -e
OUT=${1:?usage: recipe_checks.sh OUTDIR [PYTHON]}
PY=${2:-python3}
HERE=$(dirname "$0")
common="--dim 128 --layers 2 --window 64 --chunk 64 --seq 512 --batch 8 --tokens 614400 --lr 3e-3 --warmup 20 --val-every 50 --val-pieces 32 --threads 1"
$PY "$HERE/../train.py" --mode full --sampler stream --out "$OUT/full-stream" $common
$PY "$HERE/../train.py" --mode full --out "$OUT/full-docs" $common
$PY "$HERE/../train.py" --mode swa --out "$OUT/swa-docs" $common
$PY "$HERE/../train.py" --mode full --qk-norm --out "$OUT/full-docs-qk" $common
for r in full-stream full-docs swa-docs full-docs-qk; do
  printf '%s ' "$r"; tail -n 1 "$OUT/$r/val.jsonl"
done
