"""Writes the tiny random TTT-E2E models and their golden outputs (deterministic):

    /usr/bin/python3 train/make_e2e_fixtures.py          # from the repository root

test/fixtures/tiny-e2e-s1/ (L 2, S 1) and test/fixtures/tiny-e2e-s2/ (L 4, S 2), each with
config.json, model.safetensors (F32, project names, linear weights [out, in]), golden.safetensors and
README.md (how it was made, what it holds, the measured gradient norms and sensitivities).

The golden run is train/e2e/inner.ttt_forward in float64 on the F32 weights (cast exactly), stored as F32;
it is cross-checked here against the token-at-a-time streaming reference (train/e2e/stream.py).
`make_fixtures.py` (the LaCT fixtures) is not touched.
"""
from __future__ import annotations

import math
import os
import sys
from typing import Dict, List

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import e2e.model as e2e_model  # noqa: E402
from e2e import E2EConfig, E2EForCausalLM, E2EStream, export_model, load_model, ttt_forward  # noqa: E402
from lact.safetensors_io import save_safetensors  # noqa: E402

FIXTURE_DIR = os.path.join(os.path.dirname(HERE), 'test', 'fixtures')

BOS, EOS = 1, 2
TEXT1 = 'The quick brown fox jumps over the lazy dog, then naps beside a river.'
TEXT2 = 'Pack my box with five dozen liquor jugs, said the sleepy old wizard at dawn.'
T = 90
BOS_AT = 40  # a second document starts here: the target of position 39 is BOS (skipped by the loss)


def fixture_tokens() -> List[int]:
    a, b = list(TEXT1.encode('utf-8')), list(TEXT2.encode('utf-8'))
    toks = [BOS] + a[:BOS_AT - 1] + [BOS] + b[:T - BOS_AT - 1]
    assert len(toks) == T and toks[BOS_AT] == BOS
    return toks


COMMON = dict(model_type='ttt_e2e', vocab_size=256, hidden_size=32, num_heads=2, head_dim=16,
              intermediate_size_static_mlp=64, intermediate_size_dynamic_mlp=64, mini_batch_size=16,
              sliding_window=24, rms_norm_eps=1e-6, bos_token_id=BOS, eos_token_id=EOS,
              tie_word_embeddings=True, tokenizer='byte')
FIXTURES: Dict[str, dict] = {
    'tiny-e2e-s1': dict(COMMON, num_layers=2, num_ttt_layers=1, rope_theta=10000.0, inner_lr=1.0,
                        inner_clip_global_norm=2.0),
    'tiny-e2e-s2': dict(COMMON, num_layers=4, num_ttt_layers=2, rope_theta=500000.0, inner_lr=0.7,
                        inner_clip_global_norm=2.5),
}
SEEDS = {'tiny-e2e-s1': 2001, 'tiny-e2e-s2': 2002}
EMBED_STD = 0.3
CLIP_MARGIN = 0.05  # every gradient norm is at least 5% away from the clip threshold


@torch.no_grad()
def randomize(model: E2EForCausalLM, seed: int) -> E2EForCausalLM:
    """Fixture weights (not the official init, whose std 0.02 makes everything nearly invisible): norm
    gains 1 + 0.2 N, linear weights N(0, 1/fan_in) (dynamic MLP included), embedding std 0.3."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():  # registration order: deterministic
        if name.endswith('norm.weight'):
            p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
        elif name == 'model.embed.weight':
            p.copy_(EMBED_STD * torch.randn(p.shape, generator=g))
        elif p.dim() == 2:
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
        else:
            raise RuntimeError(f'no fixture init rule for {name}')
    return model


def make_model(name: str) -> E2EForCausalLM:
    return randomize(E2EForCausalLM(E2EConfig.from_dict(FIXTURES[name])), SEEDS[name])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def rotate_half_rope(x, angles):
    """The LaCT (rotate-half) RoPE layout: only to measure that the fixture tells the layouts apart."""
    dt = x.dtype
    h = x.shape[-1] // 2
    cos, sin = angles.cos().to(dt), angles.sin().to(dt)
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), -1)


def golden(model64: E2EForCausalLM, tokens: List[int]):
    t = torch.tensor(tokens)
    return ttt_forward(model64, t, keep_thetas=True, output_hidden_states=True)


def measure(name: str, model: E2EForCausalLM, tokens: List[int], r) -> Dict[str, object]:
    c = model.config
    B, W = c.mini_batch_size, c.sliding_window
    m64 = model.double()
    t = torch.tensor(tokens)
    g = r.logits
    out: Dict[str, object] = {}
    for i, (n, s) in enumerate(zip(r.grad_norms, r.clip_scales)):
        out[f'chunk {i}: loss / grad norm / clip scale'] = f'{float(r.chunk_losses[i]):.4f} / {n:.4f} / {s:.4f}'
    clipped = [s < 1.0 for s in r.clip_scales]
    assert any(clipped) and not all(clipped), f'{name}: want clipped and unclipped chunks, got {r.grad_norms}'
    margin = min(abs(n - c.inner_clip_global_norm) / c.inner_clip_global_norm for n in r.grad_norms)
    assert margin > CLIP_MARGIN, f'{name}: a gradient norm is within {margin:.3f} of the clip'
    out['min over chunks of abs(grad norm - clip) / clip'] = margin
    f = ttt_forward(m64, t, inner_lr=0.0).logits
    out[f'rel diff vs inner_lr 0 (pos >= {B})'] = rel(f[B:], g[B:])
    assert torch.allclose(f[:B], g[:B], rtol=0, atol=1e-12), 'the first chunk must not depend on the updates'
    f = ttt_forward(m64, t, clip=0.0).logits
    out[f'rel diff vs no clip (pos >= {B})'] = rel(f[B:], g[B:])
    f = ttt_forward(m64, t, inner_lr=2 * c.inner_lr).logits
    out[f'rel diff vs 2x inner_lr (pos >= {B})'] = rel(f[B:], g[B:])
    m64.config = c.replace(bos_token_id=0)  # byte 0 does not occur: every target counts
    f = ttt_forward(m64, t).logits
    m64.config = c
    k = (BOS_AT // B + 1) * B  # the chunk holding the BOS target has updated
    out[f'rel diff with BOS targets not skipped (pos >= {k})'] = rel(f[k:], g[k:])
    assert rel(f[k:], g[k:]) > 1e-3
    for lyr in m64.model.layers:
        lyr.attn.W = 10 ** 6
    f = ttt_forward(m64, t).logits
    for lyr in m64.model.layers:
        lyr.attn.W = W
    out[f'rel diff vs full attention (pos >= {W})'] = rel(f[W:], g[W:])
    assert torch.allclose(f[:W], g[:W], rtol=0, atol=1e-12)
    saved = e2e_model.apply_rope
    e2e_model.apply_rope = rotate_half_rope
    try:
        f = ttt_forward(m64, t).logits
    finally:
        e2e_model.apply_rope = saved
    out['rel diff with rotate-half RoPE'] = rel(f[1:], g[1:])
    # the streaming reference (token at a time, updates when token (i+1)B is fed)
    st = E2EStream(m64)
    sl = torch.stack([st.feed(x) for x in tokens])
    e = rel(sl, g)
    assert e < 1e-10, f'{name}: streaming != chunked ({e})'
    for ci, th in enumerate(st.thetas):
        for j in range(c.num_ttt_layers):
            for w in range(3):
                assert rel(th[j][w], r.thetas[ci][j][w]) < 1e-10
    out['streaming vs chunked rel err (float64)'] = e
    m32 = model.float()
    r32 = ttt_forward(m32, t)
    out['f32 twin rel err vs f64 golden (logits)'] = rel(r32.logits.double(), g)
    out['f32 twin rel err vs f64 golden (final theta)'] = max(
        rel(a.double(), b) for ta, tb in zip(r32.theta, r.theta) for a, b in zip(ta, tb))
    out['logit std'] = float(g.std())
    out['mean NLL (valid targets)'] = float((r.nll * (t[1:] != BOS)).sum() / (t[1:] != BOS).sum())
    return out


README = """# {name}: a tiny random TTT-E2E model and PyTorch golden outputs

Generated by `train/make_e2e_fixtures.py` (do not edit by hand); regenerate with

```sh
/usr/bin/python3 train/make_e2e_fixtures.py
```

(Debian's `python3-torch`; deterministic: fixed seeds, byte-identical on rerun on the same platform.)
The model is the PyTorch twin in `train/e2e/` (spec: `shared/spec/ttt-e2e-language-model.md`).

## The model (`config.json`, `model.safetensors`)

{desc}; vocab 256 (byte tokenizer, BOS = 1, EOS = 2), d = 32, 2 heads of 16, static and dynamic MLP
width 64, window W = 24, chunk B = 16, rope_theta {rope}, inner_lr {lr}, inner_clip_global_norm {clip},
tied head. Tensor names are `expected_tensors()` of `train/e2e/config.py`, every tensor F32, linear
weights stored **[out, in]** (y = x @ W^T, like `nn.Linear`). Random weights (not the official init):
norm gains 1 + 0.2 N(0, 1), linear weights N(0, 1/fan_in), embedding N(0, 0.3^2), seed {seed}.

## The golden run (`golden.safetensors`)

The inner loop (`train/e2e/inner.py: ttt_forward`) in float64 on the F32 weights, stored F32. Input:
T = {T} tokens, BOS then the first {a} UTF-8 bytes of

> {text1}

then BOS again at position {bos_at} (attention is not masked there; the target of position {bos_at1}
is BOS and is skipped by chunk {bos_chunk}'s loss) and the first {b} bytes of

> {text2}

Chunks of 16 from position 0: chunks 0..{last_upd} are complete and their last target is known, so each
one is applied with the weights before it and then updates (the loss is its mean CE over targets != BOS);
chunk {tail} (positions {tail_lo}..{tail_hi}) is applied with the weights after chunk {last_upd} and never
learns.

| tensor | dtype, shape | contents |
| --- | --- | --- |
| `tokens` | I32 [{T}] | the input |
| `logits` | F32 [{T}, 256] | per-position logits, each chunk with its pre-update dynamic weights |
| `nll` | F32 [{T1}] | NLL of token p+1 under the logits at p (every target, BOS ones included) |
| `loss_mask` | I32 [{T1}] | 1 where token p+1 != BOS (counted by the inner loss) |
| `logits_static` | F32 [{T}, 256] | the plain sliding-window forward with the checkpoint's dynamic weights (= inner_lr 0) |
| `hidden.{{i}}` | F32 [{T}, 32] | residual stream: `hidden.0` embeddings, `hidden.{{i}}` after block i-1 (`hidden.{L}` before the final norm), of the golden run |
| `chunk_loss` | F32 [{n}] | the inner loss of chunks 0..{last_upd} |
| `grad_norm` | F32 [{n}] | the global L2 norm of the gradient over all dynamic weights, before the clip |
| `clip_scale` | F32 [{n}] | clip_norm / grad_norm where grad_norm >= clip_norm, else 1 |
| `theta.{{c}}.layers.{{i}}.{{w1,w2,w3}}` | F32 | the dynamic weights of block i ({blocks}) after chunk c's update (c = 0..{last_upd}), same layout as `model.layers.{{i}}.dyn_mlp.{{w}}.weight` |

The streaming reference (`train/e2e/stream.py`: one token at a time, chunk i updating when token
(i+1)B is fed, before that token is processed) gives the same logits and weights (checked below).

## Measured by make_e2e_fixtures.py

"rel diff" is norm(a - b) / norm(golden) of the logits over the positions named, between the golden run
and a run with one thing changed.

| measure | value |
| --- | --- |
{rows}
"""


def fmt(v) -> str:
    if isinstance(v, float):
        return f'{v:.4g}'
    return str(v)


def write_fixture(name: str) -> Dict[str, object]:
    tokens = fixture_tokens()
    model = make_model(name)
    out = os.path.join(FIXTURE_DIR, name)
    export_model(model, out, 'F32')
    model = load_model(out, torch.float64)  # exactly the stored F32 weights
    c = model.config
    r = golden(model, tokens)
    n = r.n_updates
    assert n == (T - 1) // c.mini_batch_size
    t = torch.tensor(tokens)
    g: Dict[str, torch.Tensor] = {
        'tokens': t.to(torch.int32),
        'logits': r.logits,
        'nll': r.nll,
        'loss_mask': (t[1:] != c.bos_token_id).to(torch.int32),
        'logits_static': model(t).detach(),
        'chunk_loss': torch.stack(r.chunk_losses),
        'grad_norm': torch.tensor(r.grad_norms, dtype=torch.float64),
        'clip_scale': torch.tensor(r.clip_scales, dtype=torch.float64),
    }
    for i, h in enumerate(r.hidden):
        g[f'hidden.{i}'] = h
    for ci, th in enumerate(r.thetas):
        for j, li in enumerate(c.ttt_layers):
            for w, x in zip(('w1', 'w2', 'w3'), th[j]):
                g[f'theta.{ci}.layers.{li}.{w}'] = x
    assert torch.allclose(g['logits_static'], ttt_forward(model, t, inner_lr=0.0).logits, rtol=0, atol=1e-12)
    save_safetensors(os.path.join(out, 'golden.safetensors'), g, dtype='F32',
                     metadata={'T': str(T), 'n_updates': str(n), 'made_by': 'train/make_e2e_fixtures.py'})
    stats = measure(name, model, tokens, r)
    B = c.mini_batch_size
    desc = (f'L = {c.num_layers} blocks, the last S = {c.num_ttt_layers} of them TTT blocks '
            f'({", ".join(str(i) for i in c.ttt_layers)})')
    text = README.format(
        name=name, desc=desc, rope=f'{c.rope_theta:g}', lr=fmt(c.inner_lr), clip=fmt(c.inner_clip_global_norm),
        seed=SEEDS[name], T=T, T1=T - 1, a=BOS_AT - 1, text1=TEXT1, bos_at=BOS_AT, bos_at1=BOS_AT - 1,
        bos_chunk=(BOS_AT - 1) // B, b=T - BOS_AT - 1, text2=TEXT2, last_upd=n - 1, n=n, tail=n,
        tail_lo=n * B, tail_hi=T - 1, L=c.num_layers, blocks=', '.join(str(i) for i in c.ttt_layers),
        rows='\n'.join(f'| {k} | {fmt(v)} |' for k, v in stats.items()))
    with open(os.path.join(out, 'README.md'), 'w') as f:
        f.write(text)
    return stats


def main() -> None:
    torch.set_num_threads(1)
    for name in FIXTURES:
        stats = write_fixture(name)
        print(f'== {name}')
        for k, v in stats.items():
            print(f'  {k}: {fmt(v)}')


if __name__ == '__main__':
    main()
