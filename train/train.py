"""Trains one byte-level model (LaCT, sliding-window or full attention) on data/train.u16.

    python3 train/train.py --mode lact --out runs/lact [--tokens 8e6] [--threads 2] [--max-minutes 60]

The three modes share every size (width, depth, heads, window, sequence length, tokens, batches, seed):
only the memory differs. `lact` adds the fast-weight branch (momentum and Muon on), `swa` is the same
model without it, `full` also drops the window. q/k RMSNorm is off, as in the official LaCT configs
(`--qk-norm` turns it on).

Sequences never cross a document boundary and every family reads the same ones in the same order
(train/batches.py). The schedule is warm-up, stable, linear decay (train/recipe.py). A run checkpoints to
OUT/ckpt.pt every --ckpt-every steps and resumes from there when started again; a resumed run with other
hyperparameters or other data is refused (a larger --tokens is accepted while the run is still before its
decay). It logs one JSON line per step to OUT/log.jsonl, validation loss (with loss by position bucket) to
OUT/val.jsonl and each session to OUT/sessions.jsonl, and at the end exports OUT/model (config.json +
model.safetensors, F16) with OUT/summary.json, the whole run's record for the model card.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recipe  # noqa: E402
from lact.config import LactConfig  # noqa: E402
from lact.export import export_model  # noqa: E402
from lact.model import LaCTForCausalLM, init_official  # noqa: E402

BOS, EOS, VOCAB = 256, 257, 258


def model_config(mode: str, a: argparse.Namespace) -> LactConfig:
    base = dict(
        vocab_size=VOCAB, hidden_size=a.dim, num_hidden_layers=a.layers, num_attn_heads=a.dim // 64,
        num_lact_heads=a.lact_heads, inter_multi=1, qkv_bias=False, attn_qk_norm=a.qk_norm,
        lact_chunk_size=a.chunk, use_muon=True, lr_dim=1, qkv_silu=True, lr_parameterization='mamba',
        learnable_ttt_scale=True, use_momentum=True, ttt_loss_type='dot_product', ttt_prenorm=False,
        w0_w2_low_rank=32, window_size=a.window, rope_theta=10000.0, max_position_embeddings=a.seq,
        hidden_ratio=4, hidden_act='swish', initializer_range=0.02, norm_eps=1e-6, bos_token_id=BOS,
        eos_token_id=EOS, tie_word_embeddings=False, fw_init_gain=0.5, model_type='lact_swiglu',
        use_fast_weights=True, tokenizer='byte')
    if getattr(a, 'intermediate', None):
        base['intermediate_size'] = a.intermediate
    if mode == 'lact' and getattr(a, 'fw_own_qkv', False):
        base['fw_own_qkv'] = True
    if mode in ('swa', 'full'):
        base['use_fast_weights'] = False
    if mode == 'full':
        base['window_size'] = None
    return LactConfig.from_dict(base)


def steps_of(args: dict) -> int:
    return int(math.ceil(float(args['tokens']) / (args['seq'] * args['batch'])))


def nll_of(model: LaCTForCausalLM, x: torch.Tensor) -> torch.Tensor:
    """[b, seq] next-token NLL (nats) of x [b, seq+1]."""
    logits = model(x[:, :-1])
    return F.cross_entropy(logits.reshape(-1, VOCAB).float(), x[:, 1:].reshape(-1), reduction='none').view(x.shape[0], -1)


@torch.no_grad()
def validate(model: LaCTForCausalLM, val: np.ndarray, a: argparse.Namespace) -> dict:
    """Mean bits/byte over fixed validation pieces, and by position bucket."""
    model.eval()
    nll = np.concatenate([nll_of(model, torch.from_numpy(val[i:i + 2])).numpy() for i in range(0, len(val), 2)])
    model.train()
    return {'val_bpb': round(float(nll.mean()) / math.log(2), 5),
            'val_bpb_by_position': recipe.bucket_means(nll, recipe.position_buckets(a.seq, a.window))}


def stream_batch(data: np.ndarray, a: argparse.Namespace, step: int) -> np.ndarray:
    g = np.random.default_rng([a.seed, step])
    starts = g.integers(0, len(data) - a.seq - 1, size=a.batch)
    return np.stack([data[s:s + a.seq + 1].astype(np.int64) for s in starts])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--mode', choices=['lact', 'swa', 'full'], required=True)
    ap.add_argument('--out', required=True)
    ap.add_argument('--data', default='data')
    ap.add_argument('--dim', type=int, default=256)
    ap.add_argument('--layers', type=int, default=4)
    ap.add_argument('--lact-heads', type=int, default=2)
    ap.add_argument('--window', type=int, default=256)
    ap.add_argument('--chunk', type=int, default=256)
    ap.add_argument('--seq', type=int, default=2048, help='training sequence length (8 chunks of 256)')
    ap.add_argument('--batch', type=int, default=4)
    ap.add_argument('--tokens', type=float, default=8e6, help='training tokens in all')
    ap.add_argument('--qk-norm', action='store_true', help='per-head q/k RMSNorm (off in the official LaCT configs)')
    ap.add_argument('--sampler', choices=['documents', 'stream'], default='documents',
                    help='documents: whole pieces of one document (train/batches.py); stream: windows at random '
                         'offsets of the stream, across document boundaries (the old recipe, kept for the check '
                         'that it was a cause)')
    ap.add_argument('--precision', choices=['fp32', 'bf16'], default='fp32',
                    help='bf16: the training forward under CPU autocast (matmuls in bf16, as the official code '
                         'trains; about 1.6x faster on this AVX512-BF16 CPU); weights, optimizer and validation stay fp32')
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--min-lr-ratio', type=float, default=0.1)
    ap.add_argument('--warmup', type=int, default=50)
    ap.add_argument('--decay-frac', type=float, default=0.2, help='the last fraction of steps decays linearly')
    ap.add_argument('--wd', type=float, default=0.1)
    ap.add_argument('--clip', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=1234)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--ckpt-every', type=int, default=10)
    ap.add_argument('--val-every', type=int, default=50)
    ap.add_argument('--val-pieces', type=int, default=16)
    ap.add_argument('--max-minutes', type=float, default=0, help='stop (checkpointed) after this long; 0 = no limit')
    ap.add_argument('--export-now', action='store_true', help='export the latest checkpoint as it is (a run cut short), then stop')
    ap.add_argument('--ttt-scale-init', choices=['official', 'zero'], default='official',
                    help='zero: ttt_scale_proj starts at 0, so the fast-weight branch starts switched off (a pilot)')
    ap.add_argument('--fw-update', choices=['on', 'off'], default='on',
                    help='off: the fast weights never learn (a diagnostic: the LaCT layer as a static MLP branch)')
    ap.add_argument('--fw-input-grad', choices=['on', 'off'], default='on',
                    help='off: q/k/v reach the fast-weight branch without gradient (a pilot: does the branch pull '
                         'the projections it shares with attention away from what attention needs?)')
    ap.add_argument('--fw-input-grad-scale', type=float, default=1.0,
                    help='the fraction of the fast-weight branch\'s gradient that reaches the shared q/k/v '
                         'projections (a pilot between the official 1 and --fw-input-grad off, which is 0)')
    ap.add_argument('--fw-own-qkv', action='store_true',
                    help='the fast-weight branch gets a q/k/v projection of its own (a PyTorch-only pilot: the engine '
                         'does not run such a model); pair it with a smaller --intermediate to keep the parameters')
    ap.add_argument('--intermediate', type=int, default=0, help='the MLP width (0: the default for --dim)')
    ap.add_argument('--name', default=None, help='model name recorded in the export')
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    train, order, val, data_id = recipe.training_data(a.data, a.seq, a.batch, a.seed, a.val_pieces)
    cfg = model_config(a.mode, a)
    torch.manual_seed(a.seed)
    model = LaCTForCausalLM(cfg)
    init_official(model, torch.Generator().manual_seed(a.seed))
    if a.mode == 'lact' and a.ttt_scale_init == 'zero':
        with torch.no_grad():
            for layer in model.model.layers:
                layer.attn.ttt_scale_proj.weight.zero_()
                layer.attn.ttt_scale_proj.bias.zero_()
    if a.mode == 'lact' and a.fw_update == 'off':
        model.set_fw_update(False)
    if a.mode == 'lact':
        for layer in model.model.layers:
            layer.attn.fw_input_grad_scale = 0.0 if a.fw_input_grad == 'off' else a.fw_input_grad_scale
    model.set_attn_impl('blocked')
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and 'embeddings' not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and 'embeddings' not in n)]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': a.wd}, {'params': rest, 'weight_decay': 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    run = recipe.Run.open(a.out, vars(a), data_id, steps_of, model, opt, a.mode, order)
    args, total_steps, lr_of = run.args, run.total_steps, run.lr
    session_start = time.time()
    log, vlog = run.logs()
    model.train()
    while run.step < total_steps and not a.export_now:
        step = run.step
        t0 = time.time()
        for g in opt.param_groups:
            g['lr'] = lr_of(step)
        x = torch.from_numpy(order.batch_at(step) if a.sampler == 'documents' else stream_batch(train, a, step))
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=a.precision == 'bf16'):
            loss = nll_of(model, x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip).item()
        opt.step()
        dt = time.time() - t0
        run.elapsed += dt
        run.step = step = step + 1
        rec = {'step': step, 'loss': round(loss.item(), 5), 'bpb': round(loss.item() / math.log(2), 5),
               'lr': round(lr_of(step - 1), 7), 'gnorm': round(gnorm, 4),
               'tok_s': round(a.seq * a.batch / dt, 1), 'elapsed_min': round(run.elapsed / 60, 2)}
        if run.after_step(rec, lambda: validate(model, val, a), model, opt, a, session_start, (log, vlog)):
            return

    # Finished (or --export-now): export (F16) with the whole run's record.
    log.close()
    vlog.close()
    model.set_attn_impl('auto')
    run.finish(a, model, export_model, order, {
        'family': 'lact' if a.mode == 'lact' else a.mode, 'mode': a.mode,
        'final_val': validate(model, val, a), 'config': cfg.to_dict(),
    }, ['final_val'])


if __name__ == '__main__':
    main()
