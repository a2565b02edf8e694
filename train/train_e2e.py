"""Trains one byte-level TTT-E2E model on data/train.u16 (the outer loop: second order through every inner
step, train/e2e/inner.py), resumable.

    /usr/bin/python3 train/train_e2e.py --out runs/e2e-small [--steps 1200] [--threads 2]

The data is the LaCT models' (train/data/build_data.py): vocabulary 258, BOS 256, EOS 257, so the byte
tokenizer's specials sit outside the bytes as for the project's other models. A run checkpoints to
OUT/ckpt.pt every --ckpt-every steps and resumes from there when started again with the same arguments,
logs one JSON line per step to OUT/log.jsonl, and at the end exports OUT/model (config.json +
model.safetensors, F16) with OUT/summary.json (validation loss with and without the inner updates).

Batches are deterministic: step s reads the windows a generator seeded with (seed, s) picks, so a
resumed run sees the same tokens as an uninterrupted one.
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
from e2e.config import E2EConfig  # noqa: E402
from e2e.export import export_model  # noqa: E402
from e2e.inner import inner_lr_schedule, make_outer_optimizer, train_step, ttt_forward  # noqa: E402
from e2e.model import E2EForCausalLM, init_official  # noqa: E402

BOS, EOS, VOCAB = 256, 257, 258


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True)
    p.add_argument('--data', default='data')
    p.add_argument('--dim', type=int, default=128)
    p.add_argument('--heads', type=int, default=2)
    p.add_argument('--layers', type=int, default=4)
    p.add_argument('--ttt-layers', type=int, default=1)
    p.add_argument('--mlp', type=int, default=384, help='static and dynamic MLP width')
    p.add_argument('--chunk', type=int, default=64, help='B: the inner-loop chunk')
    p.add_argument('--window', type=int, default=64)
    p.add_argument('--chunks', type=int, default=4, help='chunks per training sequence (n*B + 1 tokens)')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--steps', type=int, default=1200)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--inner-lr', type=float, default=1.0)
    p.add_argument('--inner-warmup', type=int, default=200)
    p.add_argument('--seed', type=int, default=20261201)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--ckpt-every', type=int, default=25)
    p.add_argument('--val-seqs', type=int, default=16)
    p.add_argument('--export-now', action='store_true', help='export the latest checkpoint as it is (a run cut short), then stop')
    return p.parse_args()


def config_of(a: argparse.Namespace) -> E2EConfig:
    return E2EConfig(
        vocab_size=VOCAB, hidden_size=a.dim, num_heads=a.heads, head_dim=a.dim // a.heads,
        intermediate_size_static_mlp=a.mlp, intermediate_size_dynamic_mlp=a.mlp, num_layers=a.layers,
        num_ttt_layers=a.ttt_layers, mini_batch_size=a.chunk, sliding_window=a.window, rope_theta=10000.0,
        rms_norm_eps=1e-6, bos_token_id=BOS, eos_token_id=EOS, inner_lr=a.inner_lr, inner_clip_global_norm=1.0,
        tie_word_embeddings=True, tokenizer='byte',
    )


def windows(data: np.ndarray, n: int, length: int, rng: np.random.Generator) -> list:
    starts = rng.integers(0, len(data) - length, size=n)
    return [torch.from_numpy(data[s:s + length].astype(np.int64)) for s in starts]


def cosine(step: int, total: int, lr: float, warmup: int = 50) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    return 0.1 * lr + 0.9 * lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


@torch.no_grad()
def validate(model: E2EForCausalLM, seqs: list, inner_lr: float) -> float:
    losses = []
    for t in seqs:
        r = ttt_forward(model, t, n_inputs=t.shape[0] - 1, inner_lr=inner_lr, create_graph=False)
        losses.append(float(torch.stack(r.chunk_losses).mean()))
    return float(np.mean(losses))


def main() -> None:
    a = parse()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    train = np.memmap(os.path.join(a.data, 'train.u16'), dtype='<u2', mode='r')
    val = np.memmap(os.path.join(a.data, 'val.u16'), dtype='<u2', mode='r')
    cfg = config_of(a)
    cfg.validate()
    length = a.chunks * a.chunk + 1
    model = E2EForCausalLM(cfg)
    with torch.no_grad():
        init_official(model, seed=a.seed)
    opt = make_outer_optimizer(model, a.lr)
    ckpt = os.path.join(a.out, 'ckpt.pt')
    step = 0
    if os.path.exists(ckpt):
        state = torch.load(ckpt)
        if a.export_now:
            a.steps = state['step']  # what was trained; the rest of the arguments are the run's own
            state['args']['export_now'] = True
        if {k: v for k, v in state['args'].items() if k not in ('export_now', 'steps')} != {k: v for k, v in vars(a).items() if k not in ('export_now', 'steps')} or (not a.export_now and state['args']['steps'] != a.steps):
            raise SystemExit(f'{ckpt} was written with other arguments: {state["args"]}')
        model.load_state_dict(state['model'])
        opt.load_state_dict(state['opt'])
        step = state['step']
        print(f'resumed at step {step}', flush=True)
    log = open(os.path.join(a.out, 'log.jsonl'), 'a')
    t0 = time.time()
    while step < a.steps:
        rng = np.random.default_rng((a.seed, step))
        batch = windows(train, a.batch, length, rng)
        for g in opt.param_groups:
            g['lr'] = cosine(step, a.steps, a.lr)
        ilr = inner_lr_schedule(step, a.inner_warmup, lr=a.inner_lr)
        loss, gn = train_step(model, opt, batch, inner_lr=ilr)
        step += 1
        log.write(json.dumps({'step': step, 'loss': loss, 'grad_norm': gn, 'inner_lr': ilr, 'lr': opt.param_groups[0]['lr'], 's': round(time.time() - t0, 1)}) + '\n')
        log.flush()
        if step % 10 == 0:
            print(f'step {step}/{a.steps} loss {loss:.4f} ({loss / math.log(2):.3f} bits/byte) {time.time() - t0:.0f}s', flush=True)
        if step % a.ckpt_every == 0 or step == a.steps:
            tmp = ckpt + '.tmp'
            torch.save({'model': model.state_dict(), 'opt': opt.state_dict(), 'step': step, 'args': vars(a)}, tmp)
            os.replace(tmp, ckpt)  # never a half-written checkpoint
    vrng = np.random.default_rng((a.seed, 'val'.encode()[0]))
    vseqs = windows(val, a.val_seqs, length, vrng)
    model.eval()
    with_updates = validate(model, vseqs, a.inner_lr)
    without = validate(model, vseqs, 0.0)
    params = sum(p.numel() for p in model.parameters())
    summary = {
        'params': params, 'steps': a.steps, 'tokens_seen': a.steps * a.batch * length,
        'val_loss_with_updates': with_updates, 'val_loss_inner_lr_0': without,
        'val_bits_per_byte_with_updates': with_updates / math.log(2), 'val_bits_per_byte_inner_lr_0': without / math.log(2),
        'val_sequences': a.val_seqs, 'val_tokens_each': length, 'args': vars(a),
    }
    export_model(model, os.path.join(a.out, 'model'), 'F16', metadata={'trained_steps': a.steps, 'params': params})
    with open(os.path.join(a.out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2), flush=True)


if __name__ == '__main__':
    main()
