#!/bin/sh
# Issue 19's four models on one budget: LaCT, TTT-E2E, sliding window and full attention, with the same
# width (256), depth (4), window (256), chunk (256), sequences (2048 tokens, whole pieces of one
# document), batches (4), order (seed 1234), token count (TOKENS, default 6M: the four finish inside one
# session, as nothing outside git outlives it), schedule (LR, default 1e-3) and precision (PRECISION, default
# bf16 autocast for the training forward). Parameters: 3.82M (LaCT),
# 3.77M (TTT-E2E: static MLP 768 as the others, dynamic MLP 384 in the top block), 3.54M (the other two).
#
#   sh train/four_models.sh OUTDIR MINUTES [PYTHON]
#
# Runs two lanes at once, one CPU thread each (faster here than one process on two threads):
#   lane 1: ttt-e2e, then sliding window;  lane 2: LaCT, then full attention;
#   lane 3 (a fifth model): TTT-E2E's architecture without its TTT block (e2e-swa)
# and stops every run (checkpointed) once MINUTES have passed. Run it again to go on: every run resumes
# from its checkpoint, a finished one (OUT/<run>/summary.json) is skipped. Logs: OUTDIR/<run>.out.
set -u
OUT=${1:?usage: four_models.sh OUTDIR MINUTES [PYTHON]}
MINUTES=${2:?usage: four_models.sh OUTDIR MINUTES [PYTHON]}
PY=${3:-python3}
HERE=$(cd "$(dirname "$0")" && pwd)
DATA=${DATA:-data}
TOKENS=${TOKENS:-6e6}
LR=${LR:-1e-3}
PRECISION=${PRECISION:-bf16}
mkdir -p "$OUT"
DEADLINE=$(( $(date +%s) + MINUTES * 60 ))
COMMON="--data $DATA --dim 256 --layers 4 --window 256 --chunk 256 --seq 2048 --batch 4 --tokens $TOKENS \
--lr $LR --warmup 50 --decay-frac 0.2 --min-lr-ratio 0.1 --seed 1234 --val-every 50 --val-pieces 16 --threads 1 \
--precision $PRECISION"

run() {  # run NAME SCRIPT-ARGS...
  name=$1; shift
  while [ ! -f "$OUT/$name/summary.json" ]; do
    left=$(( (DEADLINE - $(date +%s)) / 60 ))
    [ "$left" -ge 2 ] || return 1
    "$PY" "$@" --out "$OUT/$name" --name "$name" --max-minutes "$left" $COMMON >> "$OUT/$name.out" 2>&1 || return 1
  done
}

lane1() {
  run e2e "$HERE/train_e2e.py" --ttt-layers 1 --mlp 768 --dynamic-mlp 384 --inner-lr 1.0 --inner-warmup 100 &&
  run swa "$HERE/train.py" --mode swa
}
lane2() {
  run lact "$HERE/train.py" --mode lact --lact-heads 2 &&
  run full "$HERE/train.py" --mode full
}
# The TTT-E2E architecture without its TTT block (num_ttt_layers 0): sliding window with TTT-E2E's norms,
# q/k norm and tied head, trained the same way. It separates what the inner loop buys from what the
# architecture does. E2E_SWA=1 runs it beside the two lanes (three processes on two cores: about 6 s a
# step alone in bf16, so 75 more core-minutes at 6M tokens).
lane3() {
  run e2e-swa "$HERE/train_e2e.py" --ttt-layers 0 --mlp 768 --dynamic-mlp 384 --inner-lr 1.0 --inner-warmup 100
}
# ONLY=e2e-swa runs lane 3 alone (the four already bundled, in a session that no longer has their runs).
if [ "${ONLY:-}" = e2e-swa ]; then
  lane3
else
  lane1 & p1=$!
  lane2 & p2=$!
  [ "${E2E_SWA:-0}" = 1 ] && { lane3 & p3=$!; }
  wait $p1 $p2 ${p3:-}
fi
for r in e2e lact swa full e2e-swa; do
  if [ -f "$OUT/$r/summary.json" ]; then echo "$r: finished"; else echo "$r: $(tail -n 1 "$OUT/$r/log.jsonl" 2>/dev/null)"; fi
done
