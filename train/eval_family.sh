#!/bin/sh
# Issue 19's PyTorch evaluation: loss by position for the models of one family over both evaluation
# sets, each document to 65,536 positions (full attention: its first 4,096, twice its training length).
# Fixed before any result (2026-12-02), as bench/quality-family.sh (the engine's part) says.
# Resumable: every result file is rewritten after each document and a rerun skips what it holds.
#
#   sh train/eval_family.sh PREFIX OUT [PYTHON]     # models PREFIX-<e2e|lact|swa|full|e2e-swa>
#   sh train/eval_family.sh public/models/mix6m bench/results/quality-family /work/venv/bin/python
#
# Two processes at a time (one thread each): the info and go sets.
set -u
PREFIX=${1:?usage: eval_family.sh PREFIX OUT [PYTHON]}
OUT=${2:?usage: eval_family.sh PREFIX OUT [PYTHON]}
PY=${3:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
models="$PREFIX-e2e $PREFIX-lact $PREFIX-swa $PREFIX-full"
[ -d "$PREFIX-e2e-swa" ] && models="$models $PREFIX-e2e-swa"
one() {  # one SET DATA
  "$PY" "$HERE/eval_quality.py" --models $models --data "$2" --max-tokens 65536 --full-max-tokens 4096 \
    --threads 1 --out "$OUT/pytorch-$1.json" > "$OUT/pytorch-$1.log" 2>&1 &&
  "$PY" "$HERE/eval_quality.py" --models "$PREFIX-e2e" --no-learn --data "$2" --max-tokens 65536 \
    --threads 1 --out "$OUT/pytorch-$1-e2e-frozen.json" >> "$OUT/pytorch-$1.log" 2>&1
}
one info data/eval & a=$!
one go data/eval-go & b=$!
wait $a $b
echo "done: $OUT/pytorch-*.json"
