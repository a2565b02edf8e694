#!/bin/sh
# Issue 19's evaluation: loss by position, computed by the engine, for the four models of one family
# (and two variants: TTT-E2E frozen, sliding window learning while it reads), over two evaluation sets no
# model trained on. Resumable: a result already written is kept.
#
#   sh bench/quality-family.sh PREFIX OUT      # models PREFIX-<e2e|lact|swa|full|e2e-swa|lact-detach>, results in OUT/
#   sh bench/quality-family.sh public/models/mix6m bench/results/quality-family
#
# Fixed before any result was seen (2026-12-02), sized to what the engine reads on lavapipe here (about
# 180 tokens/s for these models) inside one session, since nothing outside git outlives one:
#   info: the first two GNU Info manuals of the earlier evaluation's list (bash, coreutils), each its first
#         32,768 bytes (data/eval, train/data/build_data.py)
#   go:   the first two Go sources of data/eval-go in the build's order (manifest eval_go rank 0-1), each
#         its first 32,768 bytes
#   full attention: its first 4,096 positions only (twice its training length; its cost grows with T)
#   summary mean: positions >= 1,024 (4x the window of 256); ranges the targets name: 0-256 (the
#         window), 0-2,048 (full attention's training length), 1,024 to the end
# Seven runs of 131,072 tokens: about 85 minutes. PyTorch reads the whole sets to 65,536 positions
# (train/eval_family.sh), and cross-checks the engine position by position on these documents. The
# earlier plan (six documents a set) took 3.6 hours: INFO and GO below still select any documents.
#
# MAX, FULL_MAX, INFO and GO (environment) shorten it to check the pipeline on a few tokens; results for
# BENCHMARKS.md use the defaults.
set -eu
MAX=${MAX:-32768}
FULL_MAX=${FULL_MAX:-4096}
INFO=${INFO:-bash,coreutils}
GO=${GO:-src-cmd-internal-obj-riscv-obj.go,src-crypto-tls-common.go}
PREFIX=${1:?usage: quality-family.sh PREFIX OUT}
OUT=${2:?usage: quality-family.sh PREFIX OUT}
mkdir -p "$OUT"
run() {  # run NAME MODEL DATA DOCS MAXTOKENS [flags...]
  name=$1 model=$2 data=$3 docs=$4 max=$5; shift 5
  [ -f "$OUT/$name.json" ] && { echo "$name: kept"; return 0; }
  echo "$name: $(date -u +%H:%M:%S)"
  # The first document's per-position losses are kept (float32 bits) for the PyTorch cross-check.
  first=${docs%%,*}
  npm run -s bench -- quality --model "$model" --data "$data" ${docs:+--docs $docs} --max-tokens "$max" \
    --past 1024 --ranges 0:256,0:2048,1024: --weights f32 --dump "$first" --dump-out "$OUT/$name.$first.nll.f32" "$@" \
    --out "$OUT/$name.json.tmp" > "$OUT/$name.log" 2>&1
  mv "$OUT/$name.json.tmp" "$OUT/$name.json"
}
for set in info go; do
  if [ $set = info ]; then data=data/eval docs=$INFO; else data=data/eval-go docs=$GO; fi
  run "$set-e2e" "$PREFIX-e2e" $data "$docs" "$MAX"
  run "$set-lact" "$PREFIX-lact" $data "$docs" "$MAX"
  run "$set-swa" "$PREFIX-swa" $data "$docs" "$MAX"
  run "$set-full" "$PREFIX-full" $data "$docs" "$FULL_MAX"
  run "$set-swa-learning" "$PREFIX-swa" $data "$docs" "$MAX" --learn 256,1,1
  run "$set-e2e-frozen" "$PREFIX-e2e" $data "$docs" "$MAX" --no-learn
  # TTT-E2E's own sliding-window baseline (its architecture without the TTT block), where it was trained.
  if [ -d "$PREFIX-e2e-swa" ]; then run "$set-e2e-swa" "$PREFIX-e2e-swa" $data "$docs" "$MAX"; fi
  # LaCT trained without the gradient from its fast-weight branch into the shared q/k/v (train/README.md).
  if [ -d "$PREFIX-lact-detach" ]; then run "$set-lact-detach" "$PREFIX-lact-detach" $data "$docs" "$MAX"; fi
done
echo done
