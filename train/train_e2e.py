"""Trains one byte-level TTT-E2E model on data/train.u16 (the outer loop: second order through every inner
step, train/e2e/inner.py), resumable.

    python3 train/train_e2e.py --out runs/e2e [--tokens 8e6] [--threads 2] [--max-minutes 60]

The data, the sequences and their order are the LaCT-family models' (train/batches.py: whole pieces of
one document, seq + 1 tokens, the same seeded order), and so are the schedule, the resume rule and the
record of a run (train/recipe.py): vocabulary 258, BOS 256, EOS 257, so the byte tokenizer's specials
sit outside the bytes as for the project's other models. q/k RMSNorm is per head, as in the official
TTT-E2E configs. A run checkpoints to OUT/ckpt.pt every --ckpt-every steps and resumes from there; a
resumed run with other hyperparameters or data is refused. It logs one JSON line per step to
OUT/log.jsonl, validation (with loss by position bucket) to OUT/val.jsonl, and at the end exports OUT/model
(config.json + model.safetensors, F16) with OUT/summary.json (validation with and without the inner
updates, and the whole run's record).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recipe  # noqa: E402
from e2e.config import E2EConfig  # noqa: E402
from e2e.export import export_model  # noqa: E402
from e2e.inner import inner_lr_schedule, make_outer_optimizer, train_step, ttt_forward  # noqa: E402
from e2e.model import E2EForCausalLM, init_official  # noqa: E402

BOS, EOS, VOCAB = 256, 257, 258


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--data', default='data')
    p.add_argument('--dim', type=int, default=256)
    p.add_argument('--layers', type=int, default=4)
    p.add_argument('--ttt-layers', type=int, default=1)
    p.add_argument('--mlp', type=int, default=768, help='static MLP width (the LaCT-family models\' at width 256)')
    p.add_argument('--dynamic-mlp', type=int, default=384, help='dynamic MLP width of the TTT blocks')
    p.add_argument('--chunk', type=int, default=256, help='B: the inner-loop chunk')
    p.add_argument('--window', type=int, default=256)
    p.add_argument('--seq', type=int, default=2048, help='training sequence length (a multiple of --chunk)')
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--tokens', type=float, default=8e6, help='training tokens in all')
    p.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32',
                   help='bf16: the outer loss (with its inner steps) under CPU autocast, as the official code '
                        'trains in bf16; weights, optimizer and validation stay fp32')
    p.add_argument('--lr', type=float, default=2e-3)
    p.add_argument('--min-lr-ratio', type=float, default=0.1)
    p.add_argument('--warmup', type=int, default=50)
    p.add_argument('--decay-frac', type=float, default=0.2)
    p.add_argument('--wd', type=float, default=0.1)
    p.add_argument('--inner-lr', type=float, default=1.0)
    p.add_argument('--inner-warmup', type=int, default=100)
    p.add_argument('--seed', type=int, default=1234)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--ckpt-every', type=int, default=10)
    p.add_argument('--val-every', type=int, default=50)
    p.add_argument('--val-pieces', type=int, default=16)
    p.add_argument('--max-minutes', type=float, default=0, help='stop (checkpointed) after this long; 0 = no limit')
    p.add_argument('--export-now', action='store_true', help='export the latest checkpoint as it is (a run cut short), then stop')
    p.add_argument('--name', default=None)
    a = p.parse_args()
    if a.seq % a.chunk:
        p.error(f'--seq {a.seq} is not a multiple of --chunk {a.chunk}')
    return a


def config_of(a: argparse.Namespace) -> E2EConfig:
    return E2EConfig(
        vocab_size=VOCAB, hidden_size=a.dim, num_heads=a.dim // 64, head_dim=64,
        intermediate_size_static_mlp=a.mlp, intermediate_size_dynamic_mlp=a.dynamic_mlp, num_layers=a.layers,
        num_ttt_layers=a.ttt_layers, mini_batch_size=a.chunk, sliding_window=a.window, rope_theta=10000.0,
        rms_norm_eps=1e-6, bos_token_id=BOS, eos_token_id=EOS, inner_lr=a.inner_lr, inner_clip_global_norm=1.0,
        tie_word_embeddings=True, tokenizer='byte',
    )


def steps_of(args: dict) -> int:
    return int(math.ceil(float(args['tokens']) / (args['seq'] * args['batch'])))


@torch.no_grad()
def validate(model: E2EForCausalLM, val: np.ndarray, a: argparse.Namespace, inner_lr: float) -> dict:
    nll = np.stack([ttt_forward(model, torch.from_numpy(t), n_inputs=len(t) - 1, inner_lr=inner_lr).nll.numpy()
                    for t in val])
    return {'val_bpb': round(float(nll.mean()) / math.log(2), 5),
            'val_bpb_by_position': recipe.bucket_means(nll, recipe.position_buckets(a.seq, a.window))}


def main() -> None:
    a = parse()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    train, order, val, data_id = recipe.training_data(a.data, a.seq, a.batch, a.seed, a.val_pieces)
    cfg = config_of(a)
    cfg.validate()
    model = E2EForCausalLM(cfg)
    with torch.no_grad():
        init_official(model, seed=a.seed)
    opt = make_outer_optimizer(model, a.lr, weight_decay=a.wd)
    run = recipe.Run.open(a.out, vars(a), data_id, steps_of, model, opt, 'ttt-e2e', order)
    args, total_steps, lr_of = run.args, run.total_steps, run.lr
    session_start = time.time()
    log, vlog = run.logs()
    while run.step < total_steps and not a.export_now:
        step = run.step
        t0 = time.time()
        for g in opt.param_groups:
            g['lr'] = lr_of(step)
        ilr = inner_lr_schedule(step, a.inner_warmup, lr=a.inner_lr)
        batch = [torch.from_numpy(t) for t in order.batch_at(step)]
        loss, gn = train_step(model, opt, batch, inner_lr=ilr,
                              autocast=torch.bfloat16 if a.precision == 'bf16' else None)
        dt = time.time() - t0
        run.elapsed += dt
        run.step = step = step + 1
        rec = {'step': step, 'loss': round(loss, 5), 'bpb': round(loss / math.log(2), 5), 'lr': round(lr_of(step - 1), 7),
               'inner_lr': round(ilr, 5), 'gnorm': round(gn, 4), 'tok_s': round(a.seq * a.batch / dt, 1),
               'elapsed_min': round(run.elapsed / 60, 2)}
        if run.after_step(rec, lambda: validate(model, val, a, ilr), model, opt, a, session_start, (log, vlog)):
            return

    log.close()
    vlog.close()
    run.finish(a, model, export_model, order, {
        'family': 'ttt-e2e', 'mode': 'e2e', 'config': cfg.to_dict(),
        'final_val': validate(model, val, a, a.inner_lr), 'final_val_inner_lr_0': validate(model, val, a, 0.0),
    }, ['final_val', 'final_val_inner_lr_0'])


if __name__ == '__main__':
    main()
