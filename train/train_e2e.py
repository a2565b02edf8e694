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
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recipe  # noqa: E402
from batches import PieceOrder, validation_pieces  # noqa: E402
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
    train = np.asarray(np.memmap(os.path.join(a.data, 'train.u16'), dtype='<u2', mode='r'))
    val_stream = np.asarray(np.memmap(os.path.join(a.data, 'val.u16'), dtype='<u2', mode='r'))
    order = PieceOrder(train, a.seq + 1, a.batch, a.seed)
    val = validation_pieces(val_stream, a.seq + 1, a.val_pieces, a.seed)
    data_id = recipe.data_identity(a.data)
    cfg = config_of(a)
    cfg.validate()
    model = E2EForCausalLM(cfg)
    with torch.no_grad():
        init_official(model, seed=a.seed)
    opt = make_outer_optimizer(model, a.lr, weight_decay=a.wd)
    args = vars(a)
    total_steps = steps_of(args)  # the message's; the run's own (a resumed --export-now's) comes from Run.open
    n_params = sum(p.numel() for p in model.parameters())
    run = recipe.Run.open(a.out, args, data_id, steps_of, model, opt,
        f'ttt-e2e: {n_params:,} parameters, {total_steps} steps of {a.batch}x{a.seq} tokens; '
        f'{len(order.pieces.starts)} pieces per epoch')
    args, total_steps = run.args, run.total_steps

    def lr_of(s: int) -> float:
        return recipe.lr_at(s, total_steps, a.lr, a.warmup, a.decay_frac, a.min_lr_ratio)

    session_start = time.time()
    log = open(os.path.join(a.out, 'log.jsonl'), 'a')
    vlog = open(os.path.join(a.out, 'val.jsonl'), 'a')
    while run.step < total_steps and not a.export_now:
        step = run.step
        t0 = time.time()
        for g in opt.param_groups:
            g['lr'] = lr_of(step)
        ilr = inner_lr_schedule(step, a.inner_warmup, lr=a.inner_lr)
        batch = [torch.from_numpy(t) for t in order.batch_at(step)]
        loss, gn = train_step(model, opt, batch, inner_lr=ilr)
        dt = time.time() - t0
        run.elapsed += dt
        run.step = step = step + 1
        rec = {'step': step, 'loss': round(loss, 5), 'bpb': round(loss / math.log(2), 5), 'lr': round(lr_of(step - 1), 7),
               'inner_lr': round(ilr, 5), 'gnorm': round(gn, 4), 'tok_s': round(a.seq * a.batch / dt, 1),
               'elapsed_min': round(run.elapsed / 60, 2)}
        log.write(json.dumps(rec) + '\n')
        log.flush()
        if step % 10 == 0 or step == 1:
            print(json.dumps(rec), flush=True)
        if step % a.val_every == 0 or step == total_steps:
            v = validate(model, val, a, ilr)
            vlog.write(json.dumps({'step': step, 'tokens': step * a.seq * a.batch, **v}) + '\n')
            vlog.flush()
            print(f'step {step}: validation {v["val_bpb"]:.4f} bits/byte {v["val_bpb_by_position"]}', flush=True)
        if step % a.ckpt_every == 0 or step == total_steps:
            run.save(model, opt)
        if run.stop_if_out_of_time(model, opt, session_start, a.max_minutes):
            return
    step, elapsed = run.step, run.elapsed

    log.close()
    vlog.close()
    last = recipe.read_jsonl(os.path.join(a.out, 'log.jsonl'))[-50:]
    with_updates = validate(model, val, a, a.inner_lr)
    frozen = validate(model, val, a, 0.0)
    summary = recipe.jsonable({
        'family': 'ttt-e2e', 'mode': 'e2e', 'name': a.name or os.path.basename(os.path.normpath(a.out)),
        'parameters': n_params, 'steps': step, 'planned_steps': total_steps, 'complete': step >= total_steps,
        'tokens': step * a.seq * a.batch, 'sequence': a.seq, 'batch': a.batch,
        'pieces_per_epoch': len(order.pieces.starts), 'epochs': round(order.epoch_of(step), 4),
        'final_train_bpb_mean_last_50': round(recipe.mean(r['bpb'] for r in last), 4),
        'final_val': with_updates, 'final_val_inner_lr_0': frozen,
        'val_history': recipe.read_jsonl(os.path.join(a.out, 'val.jsonl')), 'train_minutes': round(elapsed / 60, 1),
        'threads': a.threads, 'environment': recipe.environment(), 'data': data_id, 'args': args,
        'sessions': recipe.read_jsonl(run.sessions), 'config': cfg.to_dict(),
    })
    export_model(model, os.path.join(a.out, 'model'), 'F16', metadata={'ttt_web_training': json.dumps(summary)})
    with open(os.path.join(a.out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    recipe.sessions_record(run.sessions, {'event': 'export', 'step': step})
    print(json.dumps({k: summary[k] for k in ('name', 'parameters', 'steps', 'tokens', 'final_val', 'final_val_inner_lr_0', 'train_minutes')}), flush=True)


if __name__ == '__main__':
    main()
