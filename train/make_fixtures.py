"""Writes the tiny random models and golden outputs in test/fixtures/ (deterministic).

    /usr/bin/python3 train/make_fixtures.py            # from the repository root

For each fixture <name>: test/fixtures/<name>/config.json, model.safetensors (F32 weights, official
names) and golden.safetensors: `tokens` I32 [T], `logits` F32 [T, V], `hidden.{i}` F32 [T, D] for
i = 0..L (hidden.0 = embeddings, hidden.i = after block i-1; hidden.L is before the final norm).
The golden forward runs in float64 on the f32 weights.

The random weights are scaled so that every path matters (the official init, std 0.006, would make
attention and the fast weights nearly invisible); the script asserts that it does and prints by how much.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Dict, List

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from lact import LactConfig, LaCTForCausalLM, save_safetensors, export_model, load_model  # noqa: E402
from lact.model import LowRankFastWeight  # noqa: E402

FIXTURE_DIR = os.path.join(os.path.dirname(HERE), 'test', 'fixtures')

TEXT = ('The quick brown fox jumps over the lazy dog, then naps beside a river while clouds drift '
        'slowly east across the wide summer sky.')
T = 100
BOS, EOS = 256, 257


def fixture_tokens() -> List[int]:
    data = TEXT.encode('utf-8')
    assert len(data) >= T - 1
    return [BOS] + list(data[:T - 1])


COMMON = dict(
    model_type='lact_swiglu', vocab_size=258, hidden_size=64, num_hidden_layers=2, num_attn_heads=2,
    num_lact_heads=2, rope_theta=10000.0, norm_eps=1e-6, lact_chunk_size=16, bos_token_id=BOS,
    eos_token_id=EOS, tokenizer='byte', max_position_embeddings=2048, hidden_act='swish', lr_dim=1,
    lr_parameterization='mamba', ttt_loss_type='dot_product', ttt_prenorm=False, fw_init_gain=0.5,
    initializer_range=0.006, hidden_ratio=4,
)

FIXTURES: Dict[str, dict] = {
    'tiny-all-on': dict(
        COMMON, use_fast_weights=True, use_momentum=True, use_muon=True, w0_w2_low_rank=4,
        learnable_ttt_scale=True, qkv_silu=True, attn_qk_norm=True, qkv_bias=True, inter_multi=2,
        window_size=24, tie_word_embeddings=False),  # intermediate_size absent: default rule (256)
    'tiny-all-off': dict(
        COMMON, use_fast_weights=True, use_momentum=False, use_muon=False, w0_w2_low_rank=-1,
        learnable_ttt_scale=False, qkv_silu=False, attn_qk_norm=False, qkv_bias=False, inter_multi=1,
        window_size=16, tie_word_embeddings=True, intermediate_size=96),
    'tiny-swa': dict(
        COMMON, use_fast_weights=False, window_size=16, intermediate_size=128, tie_word_embeddings=False),
    'tiny-full': dict(
        COMMON, use_fast_weights=False, window_size=None, intermediate_size=128, tie_word_embeddings=False),
    # The fast-weight branch with a q|k|v projection of its own (attn.fw_qkv, no bias): attention's q/k
    # norm and qkv bias must not reach the branch.
    'tiny-own-qkv': dict(
        COMMON, use_fast_weights=True, fw_own_qkv=True, use_momentum=True, use_muon=True, w0_w2_low_rank=-1,
        learnable_ttt_scale=True, qkv_silu=True, attn_qk_norm=True, qkv_bias=True, inter_multi=1,
        window_size=16, tie_word_embeddings=False, intermediate_size=96),
}
SEEDS = {'tiny-all-on': 1001, 'tiny-all-off': 1002, 'tiny-swa': 1003, 'tiny-full': 1004, 'tiny-own-qkv': 1005}


@torch.no_grad()
def randomize(model: LaCTForCausalLM, seed: int) -> LaCTForCausalLM:
    """Fixture weights (not a training init): every branch O(1), lr O(0.1-1), beta ~0.5-0.9."""
    g = torch.Generator().manual_seed(seed)
    c = model.config

    def randn(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float32)

    for name, p in model.named_parameters():  # registration order: deterministic
        leaf = name.split('.')[-1]
        if name == 'model.embeddings.weight':
            # tied: the same matrix makes the logits, keep the logits moderate
            p.copy_(randn(*p.shape) * (0.5 if c.tie_word_embeddings else 0.7))
        elif name.endswith('norm.weight'):  # attn_norm, mlp_norm, model.norm, q_norm, k_norm, ttt_norm
            p.copy_(1.0 + 0.2 * randn(*p.shape))
        elif leaf == 'qk_scale':
            p.copy_(1.0 + 0.2 * randn(*p.shape))
        elif leaf == 'qk_offset':
            p.copy_(0.1 * randn(*p.shape))
        elif name.endswith('lr_proj.weight'):
            p.copy_(0.05 * randn(*p.shape))
        elif name.endswith('lr_proj.bias'):
            p.copy_(6.0 + 0.3 * randn(*p.shape))  # softplus(~6 - 6.9) ~ 0.34
        elif name.endswith('ttt_scale_proj.weight'):
            p.copy_(0.1 * randn(*p.shape))
        elif name.endswith('ttt_scale_proj.bias'):
            p.copy_(1.0 + 0.1 * randn(*p.shape))
        elif name.endswith('momentum_proj.0.weight'):
            p.copy_(0.1 * randn(*p.shape))
        elif name.endswith('momentum_proj.0.bias'):
            p.copy_(1.0 + 0.3 * randn(*p.shape))  # sigmoid(1) ~ 0.73
        elif name.endswith('qkv.bias'):
            p.copy_(0.1 * randn(*p.shape))
        elif leaf == 'w_left':
            p.copy_(randn(*p.shape) / math.sqrt(p.shape[-1]))
        elif leaf == 'w_right':
            p.copy_(randn(*p.shape) / math.sqrt(p.shape[-1]))
        elif leaf in ('w0', 'w2'):
            p.copy_(1.5 * randn(*p.shape) / math.sqrt(p.shape[-1]))
        elif leaf == 'w1':
            p.copy_(randn(*p.shape) / math.sqrt(p.shape[-1]))
        elif leaf == 'weight' and p.dim() == 2:  # linear layers: qkv, o_proj, mlp, lm_head
            p.copy_(randn(*p.shape) / math.sqrt(p.shape[1]))
        else:
            raise RuntimeError(f'no fixture init rule for {name}')
    return model


def make_model(name: str) -> LaCTForCausalLM:
    cfg = LactConfig.from_dict(FIXTURES[name])
    return randomize(LaCTForCausalLM(cfg), SEEDS[name])


def with_config(model: LaCTForCausalLM, **changes) -> LaCTForCausalLM:
    """The same weights under a modified config (weights the new config lacks are dropped)."""
    m = LaCTForCausalLM(model.config.replace(**changes)).to(next(model.parameters()).dtype)
    sd = model.state_dict()
    own = m.state_dict()
    missing = set(own) - set(sd)
    if missing:
        raise RuntimeError(f'ablation needs weights the model lacks: {sorted(missing)}')
    m.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=True)
    return m


@torch.no_grad()
def forward64(model: LaCTForCausalLM, tokens: List[int]):
    m64 = model.double() if next(model.parameters()).dtype != torch.float64 else model
    m64.set_attn_impl('manual')
    logits, hidden = m64(torch.tensor([tokens]), output_hidden_states=True)
    return logits[0], [h[0] for h in hidden]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def check_fixture(name: str, model64: LaCTForCausalLM, tokens: List[int], logits: torch.Tensor) -> Dict[str, object]:
    """Asserts that every path of the model matters; returns the measured numbers."""
    c = model64.config
    out: Dict[str, float] = {}
    assert torch.isfinite(logits).all(), 'non-finite logits'

    # branch magnitudes (per layer): attention output vs fast-weight output, block branches vs residual
    model64.record_stats(True)
    forward64(model64, tokens)
    stats = model64.layer_stats()
    model64.record_stats(False)
    for i, s in enumerate(stats):
        if c.use_fast_weights:
            out[f'layer{i} lr range'] = f"{s['lr_min']:.3f}..{s['lr_max']:.3f}"
            if 'beta_min' in s:
                out[f'layer{i} beta range'] = f"{s['beta_min']:.3f}..{s['beta_max']:.3f}"
            r = s['y_ttt'] / s['o_attn']
            out[f'layer{i} norm(y_ttt)/norm(o_attn)'] = r
            assert 0.2 < r < 5, f'{name}: layer {i} fast-weight vs attention output ratio {r}'
        for key in ('attn_out', 'mlp_out'):
            r = s[key] / s['residual_in']
            out[f'layer{i} norm({key})/norm(residual_in)'] = r
            assert 0.2 < r < 5, f'{name}: layer {i} {key} vs residual ratio {r}'
    # logits are spread, not one-hot
    probs = torch.softmax(logits, -1)
    out['mean max prob'] = probs.max(-1).values.mean().item()
    out['logit std'] = logits.std().item()
    assert out['mean max prob'] < 0.9 and 0.3 < out['logit std'] < 30, f'{name}: degenerate logits'

    C = c.lact_chunk_size
    if c.use_fast_weights:
        # fast-weight updates frozen
        model64.set_fw_update(False)
        frozen, _ = forward64(model64, tokens)
        model64.set_fw_update(True)
        out['rel diff vs frozen fast weights'] = rel(frozen, logits)
        assert (frozen[:C] - logits[:C]).abs().max().item() < 1e-12, 'first chunk must not depend on updates'
        assert rel(frozen[C:], logits[C:]) > 1e-2
        # a chunk larger than the sequence: no update ever happens
        big, _ = forward64(with_config(model64, lact_chunk_size=1000), tokens)
        out['rel diff vs chunk 1000 (pos >= 16)'] = rel(big[C:], logits[C:])
        assert (big[:C] - logits[:C]).abs().max().item() < 1e-12
        assert rel(big[C:], logits[C:]) > 1e-2
        # per-chunk effect: every chunk after the first sees a change
        for s in range(C, len(tokens), C):
            d = rel(big[s:s + C], logits[s:s + C])
            assert d > 1e-3, f'{name}: chunk at {s} barely changed ({d})'
        # each option switched off with the same weights changes the output
        ablations = {}
        if c.use_muon:
            ablations['use_muon=False'] = dict(use_muon=False)
        if c.use_momentum:
            ablations['use_momentum=False'] = dict(use_momentum=False)
        if c.qkv_silu:
            ablations['qkv_silu=False'] = dict(qkv_silu=False)
        if c.learnable_ttt_scale:
            ablations['learnable_ttt_scale=False'] = dict(learnable_ttt_scale=False)
        if c.attn_qk_norm:
            ablations['attn_qk_norm=False'] = dict(attn_qk_norm=False)
        if c.fw_own_qkv:
            # The branch reads attention's q, k, v instead (fw_qkv dropped).
            ablations['fw_own_qkv=False'] = dict(fw_own_qkv=False)
        for label, ch in ablations.items():
            try:
                alt, _ = forward64(with_config(model64, **ch), tokens)
            except RuntimeError:
                continue
            d = rel(alt, logits)
            out[f'rel diff with {label}'] = d
            assert d > 1e-2, f'{name}: {label} does not matter ({d})'
        if c.qkv_bias:
            m = with_config(model64)
            with torch.no_grad():
                for layer in m.model.layers:
                    layer.attn.qkv.bias.zero_()
            alt, _ = forward64(m, tokens)
            out['rel diff with qkv bias zeroed'] = rel(alt, logits)
            assert out['rel diff with qkv bias zeroed'] > 1e-2
    if c.window_size is not None:
        W = c.window_size
        full, _ = forward64(with_config(model64, window_size=None), tokens)
        assert (full[:W] - logits[:W]).abs().max().item() < 1e-12, 'positions < W must not see the window'
        out[f'rel diff vs full attention (pos >= {W})'] = rel(full[W:], logits[W:])
        out['rel diff vs full attention (last 10)'] = rel(full[-10:], logits[-10:])
        assert out[f'rel diff vs full attention (pos >= {W})'] > 1e-2
    else:
        swa, _ = forward64(with_config(model64, window_size=16), tokens)
        out['rel diff vs window 16 (pos >= 16)'] = rel(swa[16:], logits[16:])
        assert out['rel diff vs window 16 (pos >= 16)'] > 1e-2
    return out


def write_fixture(name: str, tokens: List[int]) -> Dict[str, float]:
    model = make_model(name)
    out_dir = os.path.join(FIXTURE_DIR, name)
    export_model(model, out_dir, 'F32', metadata={'fixture': name, 'seed': SEEDS[name]})
    # golden from the weights exactly as written (f32 on disk -> float64)
    m64 = load_model(out_dir, torch.float64)
    logits, hidden = forward64(m64, tokens)
    golden = {'tokens': torch.tensor(tokens, dtype=torch.int32), 'logits': logits.float()}
    for i, h in enumerate(hidden):
        golden[f'hidden.{i}'] = h.float()
    save_safetensors(os.path.join(out_dir, 'golden.safetensors'), golden,
                     metadata={'fixture': name, 'text': TEXT, 'computed_in': 'float64'})
    numbers = check_fixture(name, m64, tokens, logits)
    # the f32 model agrees with the f64 golden (what a careful f32 engine can reach)
    m32 = load_model(out_dir, torch.float32)
    m32.set_attn_impl('manual')
    with torch.no_grad():
        l32 = m32(torch.tensor([tokens]))[0].double()
    numbers['f32 forward rel err vs f64 golden'] = rel(l32, logits)
    return numbers


README_HEAD = """# Test fixtures: tiny random LaCT models and PyTorch golden outputs

Generated by the PyTorch twin in `train/` (do not edit by hand). Regenerate with

```sh
/usr/bin/python3 train/make_fixtures.py
```

(Debian's `python3-torch`; deterministic: fixed seeds, the output is byte-identical on rerun on the same
platform.)

Each folder holds:

| file | contents |
| --- | --- |
| `config.json` | official `LaCTSWIGLUConfig` keys plus the ttt-web keys `use_fast_weights`, `tokenizer: "byte"`, `window_size: null` |
| `model.safetensors` | every weight as F32, official `LaCTForCausalLM` state-dict names |
| `golden.safetensors` | `tokens` I32 [T]; `logits` F32 [T, V]; `hidden.{i}` F32 [T, D] for i = 0..L: `hidden.0` is the embedding output, `hidden.{i}` the residual stream after block i-1 (`hidden.{L}` is before the final norm) |

The golden forward runs the whole sequence (positions 0..T-1, one batch row) in float64 on the F32 weights
(cast exactly), then stores F32. T = 100 tokens: BOS (256) followed by the first 99 UTF-8 bytes of

> {text}

so the fast weights update after each of the 6 complete chunks of 16 tokens (positions 0-15, ..., 80-95;
the last partial chunk 96-99 is applied, never learned).

All models: vocab 258 (bytes 0-255, BOS 256, EOS 257), D = 64, 2 layers, 2 attention heads (da = 32),
2 fast-weight heads (df = 32), rope_theta 10000, norm_eps 1e-6, lact_chunk_size 16.

| fixture | what it exercises |
| --- | --- |
| `tiny-all-on` | momentum, Muon, low-rank W0/W2 (r = 4, + 0.5 I), learnable TTT scale, qkv SiLU, q/k RMSNorm, qkv bias, inter_multi 2 (dh = 64), window 24 (W != C), `intermediate_size` absent (default rule: 256), untied lm_head |
| `tiny-all-off` | no momentum, no Muon, full W0/W2, no TTT scale, no qkv SiLU, no q/k norm, no qkv bias, inter_multi 1, window 16, tied embeddings (no `lm_head.weight`), intermediate_size 96 |
| `tiny-swa` | `use_fast_weights: false` (no fast-weight tensors), window 16, intermediate_size 128 |
| `tiny-full` | `use_fast_weights: false`, `window_size: null` (full causal attention), intermediate_size 128 |
| `tiny-own-qkv` | `fw_own_qkv: true` (the fast-weight branch reads q, k, v from a projection of its own, `attn.fw_qkv.weight`, no bias, no q/k norm) beside attention's q/k RMSNorm and qkv bias, momentum, Muon, full W0/W2, learnable TTT scale, qkv SiLU, inter_multi 1, window 16, untied lm_head, intermediate_size 96 |

The random weights are not the official init (std 0.006 would make attention and the fast weights
nearly invisible): linear weights ~ N(0, 1/fan_in), embeddings std 0.7 (0.5 when tied), norm weights
and qk_scale 1 + 0.2 N, qk_offset 0.1 N, qkv bias 0.1 N, W0/W2 std 1.5/sqrt(df), W1 std 1/sqrt(dh),
low-rank w_left std 1/sqrt(r) and w_right std 1/sqrt(df), lr_proj weight 0.05 N and bias 6 + 0.3 N
(lr = softplus(. - 6.9) ~ 0.1-1), momentum bias 1 + 0.3 N (beta ~ 0.2-0.95), TTT-scale bias 1 + 0.1 N.
`make_fixtures.py` asserts that every path matters; the numbers it measured are below. "rel diff" is
norm(a - b) / norm(b) of the logits (over the positions named) between the golden run and a run with one
thing changed and the same weights: fast-weight updates frozen, `lact_chunk_size` 1000 (no update within
T), an option switched off, full attention instead of the window (positions < W are asserted identical).
Norm ratios are Frobenius norms over the sequence: `o_attn` is the attention output and `y_ttt` the
fast-weight branch (after ttt_norm and the TTT scale), both before `o_proj`; `attn_out` and `mlp_out` are
the two block branches and `residual_in` the block input. "f32 forward rel err" is the same model run in
float32 by the twin, against the float64 golden.
"""


def fmt(v) -> str:
    return v if isinstance(v, str) else f'{v:.4g}'


def main() -> None:
    torch.set_num_threads(1)
    tokens = fixture_tokens()
    all_numbers = {}
    for name in FIXTURES:
        numbers = write_fixture(name, tokens)
        all_numbers[name] = numbers
        print(f'== {name}')
        for k, v in numbers.items():
            print(f'   {k}: {fmt(v)}')
    lines = [README_HEAD.replace('{text}', TEXT), '## Sensitivity (measured by make_fixtures.py)\n']
    for name, numbers in all_numbers.items():
        lines.append(f'### {name}\n')
        lines.append('| measure | value |\n| --- | --- |')
        for k, v in numbers.items():
            lines.append(f'| {k} | {fmt(v)} |')
        lines.append('')
    with open(os.path.join(FIXTURE_DIR, 'README.md'), 'w') as f:
        f.write('\n'.join(lines))
    print('wrote', FIXTURE_DIR)


if __name__ == '__main__':
    main()
