#!/bin/sh
# Issue 19's evaluation: loss by position, computed by the engine, for the four models of one family
# (and two variants: TTT-E2E frozen, sliding window learning while it reads), over two evaluation sets no
# model trained on. Resumable: a result already written is kept.
#
#   sh bench/quality-family.sh RUNS OUT        # RUNS/<e2e|lact|swa|full>/model, results in OUT/
#
# Fixed before any result was seen (2026-12-02):
#   info: the six GNU Info manuals of the earlier evaluation (bash, coreutils, find, gettext, sed, wget),
#         each its first 65,536 bytes (data/eval, train/data/build_data.py)
#   go:   the twelve Go sources of data/eval-go (golang-1.19-src), each its first 65,536 bytes
#   full attention: its first 4,096 positions only (twice its training length; its cost grows with T)
#   summary mean: positions >= 1,024 (4x the window of 256)
set -eu
RUNS=${1:?usage: quality-family.sh RUNS OUT}
OUT=${2:?usage: quality-family.sh RUNS OUT}
mkdir -p "$OUT"
run() {  # run NAME MODEL DATA DOCS MAXTOKENS [flags...]
  name=$1 model=$2 data=$3 docs=$4 max=$5; shift 5
  [ -f "$OUT/$name.json" ] && { echo "$name: kept"; return 0; }
  echo "$name: $(date -u +%H:%M:%S)"
  npm run -s bench -- quality --model "$model" --data "$data" ${docs:+--docs $docs} --max-tokens "$max" \
    --past 1024 --weights f32 "$@" --out "$OUT/$name.json.tmp" > "$OUT/$name.log" 2>&1
  mv "$OUT/$name.json.tmp" "$OUT/$name.json"
}
INFO=bash,coreutils,find,gettext,sed,wget
for set in info go; do
  if [ $set = info ]; then data=data/eval docs=$INFO; else data=data/eval-go docs=; fi
  run "$set-e2e" "$RUNS/e2e/model" $data "$docs" 65536
  run "$set-lact" "$RUNS/lact/model" $data "$docs" 65536
  run "$set-swa" "$RUNS/swa/model" $data "$docs" 65536
  run "$set-full" "$RUNS/full/model" $data "$docs" 4096
  run "$set-swa-learning" "$RUNS/swa/model" $data "$docs" 65536 --learn 256,1,1
  run "$set-e2e-frozen" "$RUNS/e2e/model" $data "$docs" 65536 --no-learn
done
echo done
