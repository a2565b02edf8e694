"""Test-time training for a sliding-window model (dynamic evaluation): how much a plain sliding-window
LaCT-family model (no fast weights) gains on long documents when its top block's MLP takes one SGD step
on each chunk's next-token loss while it reads, against the same model frozen.

    /usr/bin/python3 train/dynamic_eval.py [--model public/models/docs-swa] [--docs zsh,as] [--tokens 16384]
        [--chunk 512] [--lr 1] [--clip 1] [--out runs/dynamic-eval.json] [--dump zsh --dump-out F.nll]

The rule (the TypeScript engine is compared with it position by position, so it is exact):
- A document is [BOS] + its UTF-8 bytes, truncated to N+1 tokens; position p predicts token p+1.
- Only the top block's MLP learns (gate_proj, up_proj, down_proj of layers[L-1].mlp). Every key/value
  and the residual stream h entering that MLP sublayer are therefore unaffected by learning, so h is
  computed once for all positions with the frozen model; per chunk only x = h + mlp(mlp_norm(h)),
  norm(x) and the head are run.
- Chunks of C tokens aligned to position 0: chunk c = positions [cC, (c+1)C). For c = 0, 1, ...: the
  chunk's logits with the CURRENT MLP weights give its per-position NLL. Then, if the chunk is complete
  and token (c+1)C exists, one inner step: loss = sum over the chunk of CE(logits_p, token_{p+1}) over
  targets != BOS, / max(#valid, 1e-10); gradients w.r.t. the three MLP matrices only; one global L2
  clip over the three together (scale = clip/||g|| when ||g|| >= clip, else 1; clip <= 0: none); plain
  SGD W -= lr * scale * g. The next chunk sees the new weights: after P tokens, floor((P-1)/C) updates
  (the last one, on the last complete chunk, is taken and recorded but changes no output here).
- The frozen run (no updates) is the plain model forward; checked against the twin's own full (masked
  T x T) forward on the first 2048 positions. Everything in float32, as the engine computes (the F16
  checkpoint values are read as f32). Weights are reset to the checkpoint for every document.

Bits/byte = NLL / ln 2, averaged over positions. The dump (--dump) holds bits per position, as the
engine's quality dump (bench/quality.ts --dump) does.
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
from lact.export import load_model  # noqa: E402
from lact.model import rope_cos_sin, window_mask  # noqa: E402

FROM = 2048  # the long-context part: where the frozen model has already lost the start from its window
LN2 = math.log(2.0)


@torch.no_grad()
def top_mlp_inputs(model, ids: torch.Tensor) -> torch.Tensor:
    """The residual stream h [T, D] right before the top block's MLP sublayer, frozen model.

    LaCTModel.forward builds a T x T window mask (256 MB of bools at 16K) even when the blocked
    attention never reads it, so the layers are called here directly: blocked attention scores each
    block of W queries against the 2W keys it can see, and needs no mask when T > 2W.
    """
    c = model.config
    T = ids.shape[0]
    x = model.model.embeddings(ids[None])
    cos, sin = rope_cos_sin(T, c.attn_head_dim, c.rope_theta, dtype=x.dtype)
    mask = None if c.window_size is not None and T > 2 * c.window_size else window_mask(T, c.window_size)
    layers = model.model.layers
    for layer in layers[:-1]:
        x = layer(x, cos, sin, mask)
    top = layers[-1]
    return (x + top.attn(top.attn_norm(x), cos, sin, mask))[0]


def chunk_logits(model, h, a, gate, up, down):
    """Logits of the top block's output for h [n, D] (a = mlp_norm(h), frozen) with MLP weights given."""
    x = h + F.linear(F.silu(F.linear(a, gate)) * F.linear(a, up), down)
    return F.linear(model.model.norm(x), model.output_weight())


def run_document(model, ids: torch.Tensor, h, a, C: int, lr: float, clip: float, learn: bool):
    """Per-position NLL [N] (nats, float64 copy of the f32 values) and the updates' records."""
    bos = model.config.bos_token_id
    mlp = model.model.layers[-1].mlp
    ws = [mlp.gate_proj.weight.detach().clone(), mlp.up_proj.weight.detach().clone(),
          mlp.down_proj.weight.detach().clone()]
    N = ids.shape[0] - 1
    nll = np.empty(N, dtype=np.float64)
    updates = []
    for s in range(0, N, C):
        e = min(s + C, N)
        step = learn and e - s == C  # a complete chunk's last target, token e <= N, always exists
        for w in ws:
            w.requires_grad_(step)
        with torch.set_grad_enabled(step):
            logits = chunk_logits(model, h[s:e], a[s:e], *ws)
            tgt = ids[s + 1:e + 1]
            ce = F.cross_entropy(logits, tgt, reduction='none')
            nll[s:e] = ce.detach().double().numpy()
            if not step:
                continue
            valid = (tgt != bos).to(ce.dtype)
            loss = (ce * valid).sum() / torch.clamp(valid.sum(), min=1e-10)
            grads = torch.autograd.grad(loss, ws)
        with torch.no_grad():
            norm = float(torch.sqrt(sum((g * g).sum() for g in grads)))
            scale = clip / norm if clip > 0 and norm >= clip else 1.0
            for w, g in zip(ws, grads):
                w.sub_(g, alpha=lr * scale)
        updates.append({'chunk': s // C, 'loss': float(loss), 'grad_norm': norm, 'clip_scale': scale})
    return nll, updates


def buckets(N: int):
    """0-1K, 1-2K, 2-4K, ... doubling until N."""
    out, lo, hi = [], 0, 1024
    while lo < N:
        out.append((lo, hi))
        lo, hi = hi, 2 * hi
    return out


def summary(bits_off: np.ndarray, bits_on: np.ndarray) -> dict:
    N = len(bits_off)
    out = {'positions': N,
           'bits_without_0': float(bits_off.mean()), 'bits_with_0': float(bits_on.mean())}
    if N > FROM:
        off, on = float(bits_off[FROM:].mean()), float(bits_on[FROM:].mean())
        out.update({'bits_without_2k': off, 'bits_with_2k': on, 'ratio_2k': on / off})
    out['buckets'] = [{'bucket': f'{lo // 1024}-{hi // 1024}K', 'positions': min(hi, N) - lo,
                       'bits_without': float(bits_off[lo:hi].mean()), 'bits_with': float(bits_on[lo:hi].mean())}
                      for lo, hi in buckets(N)]
    return out


@torch.no_grad()
def check_frozen(model, model64, ids, h, an, n: int = 2048) -> dict:
    """The frozen chunked path must be the plain model: the twin's masked T x T forward on a prefix.

    In f32 the two differ by rounding only (other summation orders: ~1e-6 of the logits' scale, a few
    1e-5 absolute at logits ~20, also in the first chunk), so the f32 bound is relative; the same
    paths in float64 must agree to 1e-9, which is what shows that they compute the same function.
    """
    n = min(n, ids.shape[0] - 1)
    mlp = model.model.layers[-1].mlp
    h64 = top_mlp_inputs(model64, ids[:n])
    for m in (model, model64):
        m.set_attn_impl('manual')
    ref, ref64 = model(ids[None, :n])[0], model64(ids[None, :n])[0]
    for m in (model, model64):
        m.set_attn_impl('blocked')
    got = chunk_logits(model, h[:n], an[:n], mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight)
    d32 = float((ref - got).abs().max())
    rel = d32 / float(ref.abs().max())
    top64 = model64.model.layers[-1]
    got64 = chunk_logits(model64, h64, top64.mlp_norm(h64), top64.mlp.gate_proj.weight, top64.mlp.up_proj.weight,
                         top64.mlp.down_proj.weight)
    d64 = float((ref64 - got64).abs().max())
    assert rel < 1e-5 and d64 < 1e-9, f'frozen chunked logits differ from the full forward: {d32:.2e} ({rel:.1e} ' \
                                      f'relative) in f32, {d64:.2e} in f64'
    return {'positions': n, 'f32_max_abs_diff': d32, 'f32_rel_diff': rel, 'f64_max_abs_diff': d64}


def evaluate(model, model64, path: str, a) -> dict:
    t0 = time.time()
    data = open(path, 'rb').read()
    ids = torch.tensor(([model.config.bos_token_id] + list(data))[:a.tokens + 1], dtype=torch.long)
    h = top_mlp_inputs(model, ids[:-1])
    with torch.no_grad():
        an = model.model.layers[-1].mlp_norm(h)
    nll_off, _ = run_document(model, ids, h, an, a.chunk, a.lr, a.clip, learn=False)
    check = check_frozen(model, model64, ids, h, an)
    nll_on, updates = run_document(model, ids, h, an, a.chunk, a.lr, a.clip, learn=True)
    return {'nll_off': nll_off, 'nll_on': nll_on, 'updates': updates, 'check': check,
            'seconds': round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', default='public/models/docs-swa')
    ap.add_argument('--data', default='data', help='folder holding eval/*.txt')
    ap.add_argument('--docs', default=None, help='comma-separated manual names (default: the four longest)')
    ap.add_argument('--tokens', type=int, default=16384, help='N: positions scored per document')
    ap.add_argument('--chunk', type=int, default=512)
    ap.add_argument('--lr', type=float, default=1.0)
    ap.add_argument('--clip', type=float, default=1.0, help='global L2 clip of the gradient; <= 0: none')
    ap.add_argument('--out', default='runs/dynamic-eval.json')
    ap.add_argument('--dump', default=None, help='one document whose per-position bits are written')
    ap.add_argument('--dump-out', default=None, help='default runs/dynamic-eval-DOC.nll')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--cross-check', default=None, metavar='STATIC.f32,LEARNING.f32',
                    help="the engine's per-position bits of the --dump document (npm run bench -- quality --dump), "
                         'frozen and learning while reading: compared position by position with these')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    ev = os.path.join(a.data, 'eval')
    if a.docs:
        docs = a.docs.split(',')
    else:  # longest first: the ones that reach N and beyond
        docs = sorted((f[:-4] for f in os.listdir(ev) if f.endswith('.txt')),
                      key=lambda d: -os.path.getsize(os.path.join(ev, d + '.txt')))[:4]
    print(f'documents: {", ".join(docs)}', flush=True)
    model = load_model(a.model, torch.float32).eval()
    model64 = load_model(a.model, torch.float64).eval()  # for the check only
    for m in (model, model64):
        m.set_attn_impl('blocked')
        for p in m.parameters():
            p.requires_grad_(False)

    t0 = time.time()
    results, per_doc = {}, {}
    for d in docs + ([a.dump] if a.dump and a.dump not in docs else []):
        r = results[d] = evaluate(model, model64, os.path.join(ev, d + '.txt'), a)
        if d not in docs:
            continue
        s = summary(r['nll_off'] / LN2, r['nll_on'] / LN2)
        s.update({'updates': r['updates'], 'check': r['check'], 'seconds': r['seconds']})
        per_doc[d] = s
        print(f"{d}: {s['positions']} positions, {len(r['updates'])} updates, {r['seconds']} s, check "
              f"{r['check']['f32_max_abs_diff']:.1e} (f64 {r['check']['f64_max_abs_diff']:.0e}); bits/byte [0, N) "
              f"{s['bits_without_0']:.4f} -> {s['bits_with_0']:.4f}"
              + (f"; [2K, N) {s['bits_without_2k']:.4f} -> {s['bits_with_2k']:.4f} (ratio {s['ratio_2k']:.4f})"
                 if 'ratio_2k' in s else ''), flush=True)
        for b in s['buckets']:
            print(f"  {b['bucket']:>6}: {b['bits_without']:.4f} -> {b['bits_with']:.4f}", flush=True)
    seconds = round(time.time() - t0, 1)

    args = {k: getattr(a, k) for k in ('model', 'data', 'tokens', 'chunk', 'lr', 'clip')}
    args['docs'] = docs
    if a.out:
        os.makedirs(os.path.dirname(a.out) or '.', exist_ok=True)
        with open(a.out, 'w') as f:
            json.dump({'command': 'train/dynamic_eval.py ' + ' '.join(sys.argv[1:]), 'args': args,
                       'torch': torch.__version__, 'seconds': seconds, 'perDoc': per_doc}, f, indent=1)
    if a.dump:
        r = results[a.dump]
        out = a.dump_out or f'runs/dynamic-eval-{a.dump}.nll'
        os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
        N = len(r['nll_off'])
        (np.concatenate([r['nll_off'], r['nll_on']]) / LN2).astype('<f4').tofile(out)
        with open(out + '.json', 'w') as f:
            json.dump({'layout': f'float32 little-endian, 2 x {N}: bits (NLL / ln 2) at positions 0..N-1 '
                                 '(position p predicts token p+1), first without updates, then with updates',
                       'document': a.dump, 'tokens': N, 'chunk': a.chunk, 'lr': a.lr, 'clip': a.clip,
                       'model': a.model, 'updates': len(r['updates'])}, f, indent=1)
        if a.cross_check:
            check = cross_check(a.cross_check.split(','), r['nll_off'] / LN2, r['nll_on'] / LN2)
            with open(out + '.cross-check.json', 'w') as f:
                json.dump(check, f, indent=1)
            for k, v in check.items():
                print(f"cross-check {k}: max |engine - PyTorch| {v['max_abs_diff']:.2e} bits at position {v['at']}, "
                      f"mean {v['mean_abs_diff']:.2e}; mean over [2K, N): engine {v['engine_2k']:.4f}, PyTorch {v['pytorch_2k']:.4f}", flush=True)
    print(f'total {seconds} s', flush=True)


def cross_check(files, off: np.ndarray, on: np.ndarray) -> dict:
    """The engine's dumps (float32 bits per position) against this run's, position by position."""
    out = {}
    for name, path, ours in zip(('frozen', 'learning'), files, (off, on)):
        eng = np.fromfile(path, dtype='<f4').astype(np.float64)
        if eng.shape[0] != ours.shape[0]:
            raise SystemExit(f'{path}: {eng.shape[0]} positions, PyTorch scored {ours.shape[0]}')
        d = np.abs(eng - ours)
        out[name] = {'file': path, 'max_abs_diff': float(d.max()), 'at': int(d.argmax()), 'mean_abs_diff': float(d.mean()),
                     'engine_2k': float(eng[2048:].mean()), 'pytorch_2k': float(ours[2048:].mean())}
    return out


if __name__ == '__main__':
    main()
