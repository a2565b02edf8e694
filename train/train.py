"""Trains one byte-level model (LaCT, sliding-window or full attention) on data/train.u16.

    /usr/bin/python3 train/train.py --mode lact --out runs/lact-small [--tokens 6e6] [--threads 2]

The three modes share every size (width, depth, heads, window, sequence length, tokens, batches, seed):
only the memory differs. `lact` adds the fast-weight branch (momentum and Muon on), `swa` is the same
model without it, `full` also drops the window. A run checkpoints to OUT/ckpt.pt every --ckpt-every
steps and resumes from there when started again with the same arguments (sessions end; training must
not), logs one JSON line per step to OUT/log.jsonl and validation loss to OUT/val.jsonl, and at the end
exports OUT/model (config.json + model.safetensors, F16) with OUT/summary.json.

Batches are deterministic: step s reads the windows a generator seeded with (seed, s) picks, so a
resumed run sees the same tokens as an uninterrupted one, and the three modes see the same tokens.
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
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lact.config import LactConfig  # noqa: E402
from lact.export import export_model  # noqa: E402
from lact.model import LaCTForCausalLM, init_official  # noqa: E402

BOS, EOS, VOCAB = 256, 257, 258


def model_config(mode: str, a: argparse.Namespace) -> LactConfig:
    base = dict(
        vocab_size=VOCAB, hidden_size=a.dim, num_hidden_layers=a.layers, num_attn_heads=a.dim // 64,
        num_lact_heads=a.lact_heads, inter_multi=1, qkv_bias=False, attn_qk_norm=True,
        lact_chunk_size=a.chunk, use_muon=True, lr_dim=1, qkv_silu=True, lr_parameterization='mamba',
        learnable_ttt_scale=True, use_momentum=True, ttt_loss_type='dot_product', ttt_prenorm=False,
        w0_w2_low_rank=32, window_size=a.window, rope_theta=10000.0, max_position_embeddings=a.seq,
        hidden_ratio=4, hidden_act='swish', initializer_range=0.02, norm_eps=1e-6, bos_token_id=BOS,
        eos_token_id=EOS, tie_word_embeddings=False, fw_init_gain=0.5, model_type='lact_swiglu',
        use_fast_weights=True, tokenizer='byte')
    if mode in ('swa', 'full'):
        base['use_fast_weights'] = False
    if mode == 'full':
        base['window_size'] = None
    return LactConfig.from_dict(base)


def batch(data: np.ndarray, seq: int, bsz: int, seed: int, step: int) -> torch.Tensor:
    """bsz windows of seq+1 tokens, at offsets drawn from (seed, step) alone."""
    g = np.random.default_rng([seed, step])
    starts = g.integers(0, len(data) - seq - 1, size=bsz)
    return torch.from_numpy(np.stack([data[s:s + seq + 1].astype(np.int64) for s in starts]))


def lr_at(step: int, a: argparse.Namespace, total: int) -> float:
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = (step - a.warmup) / max(1, total - a.warmup)
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def loss_of(model: LaCTForCausalLM, x: torch.Tensor) -> torch.Tensor:
    logits = model(x[:, :-1])
    return F.cross_entropy(logits.reshape(-1, VOCAB).float(), x[:, 1:].reshape(-1))


@torch.no_grad()
def validate(model: LaCTForCausalLM, val: np.ndarray, a: argparse.Namespace) -> float:
    """Mean loss (nats/byte) over a fixed set of validation windows."""
    model.eval()
    total = 0.0
    for i in range(a.val_batches):
        total += loss_of(model, batch(val, a.seq, 1, a.seed + 1, i)).item()
    model.train()
    return total / a.val_batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--mode', choices=['lact', 'swa', 'full'], required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--data', default='data')
    ap.add_argument('--dim', type=int, default=256)
    ap.add_argument('--layers', type=int, default=4)
    ap.add_argument('--lact-heads', type=int, default=2)
    ap.add_argument('--window', type=int, default=512)
    ap.add_argument('--chunk', type=int, default=512)
    ap.add_argument('--seq', type=int, default=4096, help='training sequence length (8 chunks of 512)')
    ap.add_argument('--batch', type=int, default=1)
    ap.add_argument('--tokens', type=float, default=6e6, help='training tokens in all')
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--min-lr-ratio', type=float, default=0.1)
    ap.add_argument('--warmup', type=int, default=60)
    ap.add_argument('--wd', type=float, default=0.1)
    ap.add_argument('--clip', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=1234)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--ckpt-every', type=int, default=25)
    ap.add_argument('--val-every', type=int, default=100)
    ap.add_argument('--val-batches', type=int, default=8)
    ap.add_argument('--max-minutes', type=float, default=0, help='stop (checkpointed) after this long; 0 = no limit')
    ap.add_argument('--name', default=None, help='model name recorded in the export')
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    train = np.memmap(os.path.join(a.data, 'train.u16'), dtype=np.uint16, mode='r')
    val = np.memmap(os.path.join(a.data, 'val.u16'), dtype=np.uint16, mode='r')
    cfg = model_config(a.mode, a)
    torch.manual_seed(a.seed)
    model = LaCTForCausalLM(cfg)
    init_official(model, torch.Generator().manual_seed(a.seed))
    model.set_attn_impl('blocked')
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and 'embeddings' not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and 'embeddings' not in n)]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': a.wd}, {'params': rest, 'weight_decay': 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    total_steps = int(math.ceil(a.tokens / (a.seq * a.batch)))
    n_params = sum(p.numel() for p in model.parameters())

    ckpt = os.path.join(a.out, 'ckpt.pt')
    step, elapsed = 0, 0.0
    if os.path.exists(ckpt):
        st = torch.load(ckpt)
        if st['args']['mode'] != a.mode or st['args']['seq'] != a.seq or st['args']['dim'] != a.dim:
            raise SystemExit(f'{ckpt} is from another run ({st["args"]}); use another --out')
        model.load_state_dict(st['model'])
        opt.load_state_dict(st['opt'])
        step, elapsed = st['step'], st['elapsed']
        print(f'resumed at step {step}/{total_steps} ({elapsed / 60:.1f} min so far)', flush=True)
    else:
        print(f'{a.mode}: {n_params:,} parameters, {total_steps} steps of {a.batch}x{a.seq} tokens', flush=True)

    def save() -> None:
        tmp = ckpt + '.tmp'
        torch.save({'model': model.state_dict(), 'opt': opt.state_dict(), 'step': step, 'elapsed': elapsed,
                    'args': vars(a)}, tmp)
        os.replace(tmp, ckpt)  # never a half-written checkpoint

    session_start = time.time()
    log = open(os.path.join(a.out, 'log.jsonl'), 'a')
    vlog = open(os.path.join(a.out, 'val.jsonl'), 'a')
    model.train()
    while step < total_steps:
        t0 = time.time()
        for g in opt.param_groups:
            g['lr'] = lr_at(step, a, total_steps)
        x = batch(train, a.seq, a.batch, a.seed, step)
        loss = loss_of(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip).item()
        opt.step()
        dt = time.time() - t0
        elapsed += dt
        step += 1
        rec = {'step': step, 'loss': round(loss.item(), 5), 'bpb': round(loss.item() / math.log(2), 5),
               'lr': round(lr_at(step - 1, a, total_steps), 7), 'gnorm': round(gnorm, 4),
               'tok_s': round(a.seq * a.batch / dt, 1), 'elapsed_min': round(elapsed / 60, 2)}
        log.write(json.dumps(rec) + '\n')
        log.flush()
        if step % 10 == 0 or step == 1:
            print(json.dumps(rec), flush=True)
        if step % a.val_every == 0 or step == total_steps:
            v = validate(model, val, a)
            vlog.write(json.dumps({'step': step, 'val_loss': round(v, 5), 'val_bpb': round(v / math.log(2), 5)}) + '\n')
            vlog.flush()
            print(f'step {step}: validation {v / math.log(2):.4f} bits/byte', flush=True)
        if step % a.ckpt_every == 0 or step == total_steps:
            save()
        if a.max_minutes and time.time() - session_start > a.max_minutes * 60 and step < total_steps:
            save()
            print(f'stopping after {a.max_minutes} min at step {step}; run again to resume', flush=True)
            return

    # Finished: export (F16), with what the model card needs.
    last = [json.loads(l) for l in open(os.path.join(a.out, 'log.jsonl'))][-50:]
    vals = [json.loads(l) for l in open(os.path.join(a.out, 'val.jsonl'))]
    summary = {
        'mode': a.mode, 'name': a.name or os.path.basename(os.path.normpath(a.out)), 'parameters': n_params,
        'steps': step, 'tokens': step * a.seq * a.batch, 'sequence': a.seq, 'batch': a.batch,
        'final_train_bpb_mean_last_50': round(sum(r['bpb'] for r in last) / len(last), 4),
        'final_val_bpb': vals[-1]['val_bpb'] if vals else None, 'train_minutes': round(elapsed / 60, 1),
        'threads': a.threads, 'torch': torch.__version__, 'args': vars(a),
        'command': 'train/train.py ' + ' '.join(sys.argv[1:]),
    }
    model.set_attn_impl('auto')
    export_model(model, os.path.join(a.out, 'model'), 'F16', metadata={'ttt_web_training': json.dumps(summary)})
    with open(os.path.join(a.out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary), flush=True)


if __name__ == '__main__':
    main()
