#!/bin/sh
# Issue 19's PyTorch evaluation: loss by position for the models of one family over both evaluation
# sets, each document to 65,536 positions (full attention: its first 4,096, twice its training length).
# Fixed before any result (2026-12-02), as bench/quality-family.sh (the engine's part) says.
# Resumable: every result file is rewritten after each document and a rerun skips what it holds.
#
#   sh train/eval_family.sh PREFIX OUT [PYTHON]     # models PREFIX-<e2e|lact|swa|full|e2e-swa|lact-detach>
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
[ -d "$PREFIX-lact-detach" ] && models="$models $PREFIX-lact-detach"
one() {  # one SET DATA
  "$PY" "$HERE/eval_quality.py" --models $models --data "$2" --max-tokens 65536 --full-max-tokens 4096 \
    --threads 1 --out "$OUT/pytorch-$1.json" > "$OUT/pytorch-$1.log" 2>&1 &&
  "$PY" "$HERE/eval_quality.py" --models "$PREFIX-e2e" --no-learn --data "$2" --max-tokens 65536 \
    --threads 1 --out "$OUT/pytorch-$1-e2e-frozen.json" >> "$OUT/pytorch-$1.log" 2>&1
}
if [ "${CROSS_ONLY:-0}" != 1 ]; then         # CROSS_ONLY=1: the cross-checks alone (CHECK_MAX: their length)
  one info data/eval & a=$!
  one go data/eval-go & b=$!
  wait $a $b
fi

# The cross-check against the engine, position by position, on each engine run's first document
# (bench/quality-family.sh keeps its per-position losses as OUT/<set>-<run>.<doc>.nll.f32).
for dump in "$OUT"/*.nll.f32; do
  [ -f "$dump" ] || continue
  base=$(basename "$dump" .nll.f32)         # <set>-<run>.<doc>
  run=${base%%.*}; doc=${base#*.}
  set=${run%%-*}; what=${run#*-}
  [ -f "$OUT/crosscheck-$run.json" ] && continue
  if [ "$set" = info ]; then data=data/eval; else data=data/eval-go; fi
  max=${CHECK_MAX:-32768}; flags=""
  case $what in
    full) [ "$max" -gt 4096 ] && max=4096; model=$PREFIX-full;;
    e2e-frozen) model=$PREFIX-e2e; flags=--no-learn;;
    swa-learning) continue;;                  # below: train/dynamic_eval.py is its twin
    *) model=$PREFIX-$what;;
  esac
  "$PY" "$HERE/eval_quality.py" --models "$model" $flags --data "$data" --docs "$doc" --max-tokens $max --threads 2 \
    --cross-check "$dump" --out "$OUT/crosscheck-$run.json" >> "$OUT/crosscheck.log" 2>&1
done
# Sliding window learning while it reads, against train/dynamic_eval.py (its PyTorch twin: chunks of
# 256, SGD rate 1, clip 1, as the engine run), on the info set's first document.
for static in "$OUT"/info-swa.*.nll.f32; do
  [ -f "$static" ] || continue
  doc=$(basename "$static" .nll.f32); doc=${doc#info-swa.}
  learning="$OUT/info-swa-learning.$doc.nll.f32"
  [ -f "$learning" ] && [ ! -f "$OUT/crosscheck-info-swa-learning.json" ] || continue
  "$PY" "$HERE/dynamic_eval.py" --model "$PREFIX-swa" --docs "$doc" --tokens ${CHECK_MAX:-32768} --chunk 256 --lr 1 --clip 1 \
    --threads 2 --cross-check "$static,$learning" --out "$OUT/crosscheck-info-swa-learning.json" >> "$OUT/crosscheck.log" 2>&1
done
echo "done: $OUT/pytorch-*.json, $OUT/crosscheck-*.json"
