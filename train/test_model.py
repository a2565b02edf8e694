"""Checks of the PyTorch twin. Plain script (no pytest):

    /usr/bin/python3 train/test_model.py

Ends with "N passed, N failed" and exits non-zero on a failure.

(a) the batched chunk forward (lact.model) equals an independent one-token-at-a-time numpy
    implementation (KV window, fast weights, momentum, pending chunk carried as streaming state) to 1e-10
    in float64, on the fixture configs and some awkward shapes;
(b) safetensors round trips (F32 / F16 / BF16 / I32 / I64) and the fixture files read back;
(c) Newton-Schulz maps a random matrix to singular values near 1;
plus: the hand-written fast-weight update is the negative autograd gradient, batch rows are independent,
the state dict names are exactly config.ts's expectedTensors(), SDPA (if torch has it) equals the manual
attention, the fixtures on disk are what make_fixtures.py would write.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from lact import LactConfig, LaCTForCausalLM, expected_tensors, newton_schulz5  # noqa: E402
from lact.safetensors_io import load_safetensors, load_safetensors_with_metadata, save_safetensors  # noqa: E402
from lact.model import swiglu_fw_apply, swiglu_fw_update  # noqa: E402
import make_fixtures as mf  # noqa: E402

from checks import Checks  # noqa: E402

_checks = Checks()
test = _checks.test
run_all = _checks.run_all


# --------------------------------------------------------------------------------------------------
# An independent, token-at-a-time implementation in numpy float64 (streaming state, no chunk matmuls).
# --------------------------------------------------------------------------------------------------

def _silu(x):
    return x / (1.0 + np.exp(-x))


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def _rms(x, w, eps):
    return x / math.sqrt(float(np.mean(x * x)) + eps) * w


def _rope(vec, pos, block, theta):
    """Rotate-half RoPE on each `block`-sized piece of vec, written as explicit pair rotations."""
    out = vec.copy()
    half = block // 2
    for b0 in range(0, len(vec), block):
        for i in range(half):
            ang = pos * theta ** (-2.0 * i / block)
            c, s = math.cos(ang), math.sin(ang)
            x1, x2 = vec[b0 + i], vec[b0 + i + half]
            out[b0 + i] = x1 * c - x2 * s
            out[b0 + i + half] = x2 * c + x1 * s
    return out


def _ns5(G):
    X = G.T if G.shape[0] > G.shape[1] else G
    X = X / (math.sqrt(float(np.sum(X * X))) + 1e-7)
    for a, b, c in [(4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037),
                    (2.8769, -3.1427, 1.2046), (2.8366, -3.0525, 1.2012)]:
        A = X @ X.T
        X = a * X + (b * A + c * (A @ A)) @ X
    return X.T if G.shape[0] > G.shape[1] else X


class _Head:
    """One fast-weight head carried token by token."""

    def __init__(self, W0, W1, W2, use_momentum, use_muon, C):
        self.W = [W0.copy(), W1.copy(), W2.copy()]
        self.n = [np.sqrt((w * w).sum(axis=1, keepdims=True)) for w in self.W]
        self.M = [np.zeros_like(w) for w in self.W] if use_momentum else None
        self.use_muon = use_muon
        self.C = C
        self.pending = []  # (k, v, lr0, lr1, lr2, beta)

    def apply(self, x):
        W0, W1, W2 = self.W
        return W1 @ (_silu(W0 @ x) * (W2 @ x))

    def push(self, k, v, lrs, beta):
        self.pending.append((k, v, lrs, beta))
        if len(self.pending) == self.C:
            self.learn()
            self.pending = []

    def learn(self):
        W0, W1, W2 = self.W
        d0, d1, d2 = np.zeros_like(W0), np.zeros_like(W1), np.zeros_like(W2)
        for k, v, (l0, l1, l2), _ in self.pending:
            g = W0 @ k
            u = W2 @ k
            sg = _sigmoid(g)
            p = W1.T @ v                                  # d<f(k), v>/d hidden
            d1 += l1 * np.outer(v, _silu(g) * u)
            d0 += l0 * np.outer(p * u * (sg + g * sg * (1 - sg)), k)
            d2 += l2 * np.outer(p * _silu(g), k)
        dws = [d0, d1, d2]
        if self.M is not None:
            mbar = float(np.mean([b for *_, b in self.pending]))
            dws = [d + mbar * m for d, m in zip(dws, self.M)]
            self.M = [d.copy() for d in dws]
        if self.use_muon:
            dws = [_ns5(d) for d in dws]
        new = []
        for w, d, n in zip(self.W, dws, self.n):
            w = w + d
            new.append(w / (np.sqrt((w * w).sum(axis=1, keepdims=True)) + 1e-5) * n)
        self.W = new


def naive_forward(sd, c: LactConfig, tokens):
    """Logits [T, V] and hidden states, one token at a time from position 0."""
    sd = {k: v.detach().double().numpy() for k, v in sd.items()}
    D, Ha, da = c.hidden_size, c.num_attn_heads, c.attn_head_dim
    Hf, df = c.num_lact_heads, c.fw_head_dim
    L = c.num_hidden_layers
    inv_sp = 0.001 + math.log(-math.expm1(-0.001))
    layers = []
    for i in range(L):
        p = f'model.layers.{i}.attn.'
        st = {'kv': []}
        if c.use_fast_weights:
            heads = []
            for h in range(Hf):
                if c.w0_w2_low_rank > 0:
                    eye = np.eye(c.fw_hidden, df)
                    W0 = sd[p + 'w0.w_left'][h] @ sd[p + 'w0.w_right'][h] + 0.5 * eye
                    W2 = sd[p + 'w2.w_left'][h] @ sd[p + 'w2.w_right'][h] + 0.5 * eye
                else:
                    W0, W2 = sd[p + 'w0'][h], sd[p + 'w2'][h]
                heads.append(_Head(W0, sd[p + 'w1'][h], W2, c.use_momentum, c.use_muon, c.lact_chunk_size))
            st['heads'] = heads
        layers.append(st)
    E = sd['model.embeddings.weight']
    Wout = E if c.tie_word_embeddings else sd['lm_head.weight']
    logits, hidden = [], [[] for _ in range(L + 1)]
    for pos, tok in enumerate(tokens):
        x = E[tok].copy()
        for i in range(L):
            hidden[i].append(x.copy())
            pre = f'model.layers.{i}.'
            p = pre + 'attn.'
            st = layers[i]
            a = _rms(x, sd[pre + 'attn_norm.weight'], c.norm_eps)
            qkv = sd[p + 'qkv.weight'] @ a
            if c.qkv_bias:
                qkv = qkv + sd[p + 'qkv.bias']
            q, k, v = qkv[:D], qkv[D:2 * D], qkv[2 * D:]
            if c.attn_qk_norm:
                q = _rms(q, sd[p + 'q_norm.weight'], 1e-5)
                k = _rms(k, sd[p + 'k_norm.weight'], 1e-5)
            st['kv'].append((_rope(k, pos, da, c.rope_theta), v))
            if c.window_size is not None and len(st['kv']) > c.window_size:
                st['kv'].pop(0)
            qr = _rope(q, pos, da, c.rope_theta)
            o = np.zeros(D)
            for h in range(Ha):
                sl = slice(h * da, (h + 1) * da)
                scores = np.array([qr[sl] @ kk[sl] for kk, _ in st['kv']]) / math.sqrt(da)
                w = np.exp(scores - scores.max())
                w /= w.sum()
                o[sl] = sum(wj * vv[sl] for wj, (_, vv) in zip(w, st['kv']))
            if c.use_fast_weights:
                fq = q * sd[p + 'qk_scale'][:, 0] + sd[p + 'qk_offset'][:, 0]
                fk = k * sd[p + 'qk_scale'][:, 1] + sd[p + 'qk_offset'][:, 1]
                fv = v.copy()
                if c.qkv_silu:
                    fq, fk, fv = _silu(fq), _silu(fk), _silu(fv)
                for h in range(Hf):
                    sl = slice(h * df, (h + 1) * df)
                    fq[sl] = fq[sl] / (np.linalg.norm(fq[sl]) + 1e-5)
                    fk[sl] = fk[sl] / (np.linalg.norm(fk[sl]) + 1e-5)
                fq = _rope(fq, pos, da, c.rope_theta)
                fk = _rope(fk, pos, da, c.rope_theta)
                lr = _softplus(sd[p + 'lr_proj.weight'] @ a + sd[p + 'lr_proj.bias'] + inv_sp)
                beta = (_sigmoid(sd[p + 'momentum_proj.0.weight'] @ a + sd[p + 'momentum_proj.0.bias'])
                        if c.use_momentum else np.zeros(Hf))
                if c.learnable_ttt_scale:
                    tscale = _silu(sd[p + 'ttt_scale_proj.weight'] @ a + sd[p + 'ttt_scale_proj.bias'])
                y = np.zeros(D)
                for h in range(Hf):
                    sl = slice(h * df, (h + 1) * df)
                    head = st['heads'][h]
                    yh = _rms(head.apply(fq[sl]), sd[p + 'ttt_norm.weight'], 1e-5)
                    if c.learnable_ttt_scale:
                        yh = yh * tscale[h]
                    y[sl] = yh
                    head.push(fk[sl], fv[sl], (lr[3 * h], lr[3 * h + 1], lr[3 * h + 2]), beta[h])
                o = o + y
            x = x + sd[p + 'o_proj.weight'] @ o
            m = _rms(x, sd[pre + 'mlp_norm.weight'], c.norm_eps)
            g = sd[pre + 'mlp.gate_proj.weight'] @ m
            u = sd[pre + 'mlp.up_proj.weight'] @ m
            x = x + sd[pre + 'mlp.down_proj.weight'] @ (_silu(g) * u)
        hidden[L].append(x.copy())
        logits.append(Wout @ _rms(x, sd['model.norm.weight'], c.norm_eps))
    return np.array(logits), [np.array(h) for h in hidden]


def _batched(model, tokens):
    model = model.double()
    model.set_attn_impl('manual')
    with torch.no_grad():
        logits, hidden = model(torch.tensor([tokens]), output_hidden_states=True)
    return logits[0].numpy(), [h[0].numpy() for h in hidden]


def _check_vs_naive(model, tokens, tol=1e-10):
    model = model.double()
    lb, hb = _batched(model, tokens)
    ln, hn = naive_forward(model.state_dict(), model.config, tokens)
    scale = max(1.0, np.abs(ln).max())
    err = np.abs(lb - ln).max() / scale
    assert err < tol, f'logits differ from the naive loop by {err:.3e} (relative to max |logit|)'
    for i, (a, b) in enumerate(zip(hb, hn)):
        e = np.abs(a - b).max() / max(1.0, np.abs(b).max())
        assert e < tol, f'hidden.{i} differs by {e:.3e}'
    return err


def _fixture_model(name, **changes):
    cfg = dict(mf.FIXTURES[name])
    cfg.update(changes)
    model = LaCTForCausalLM(LactConfig.from_dict(cfg))
    return mf.randomize(model, mf.SEEDS[name])


TOKENS = mf.fixture_tokens()


@test
def a1_naive_equals_batched_tiny_all_on():
    err = _check_vs_naive(_fixture_model('tiny-all-on'), TOKENS)
    print(f'     max rel logit diff {err:.2e}')


@test
def a2_naive_equals_batched_tiny_all_off():
    err = _check_vs_naive(_fixture_model('tiny-all-off'), TOKENS)
    print(f'     max rel logit diff {err:.2e}')


@test
def a3_naive_equals_batched_baselines():
    for name in ('tiny-swa', 'tiny-full'):
        _check_vs_naive(_fixture_model(name), TOKENS)


@test
def a4_naive_equals_batched_awkward_shapes():
    # rope blocks (da = 32) spanning two fast-weight heads (df = 16); odd chunk and window; T a
    # multiple of C; inter_multi 1.5; momentum without Muon; Muon without momentum; window > T
    cases = [
        dict(num_attn_heads=2, num_lact_heads=4, lact_chunk_size=7, window_size=5, inter_multi=1.5),
        dict(num_attn_heads=4, num_lact_heads=2, lact_chunk_size=10, window_size=13, use_muon=False),
        dict(lact_chunk_size=1, window_size=3, use_momentum=False),
        dict(lact_chunk_size=20, window_size=1000),
    ]
    for i, ch in enumerate(cases):
        model = _fixture_model('tiny-all-on', **ch)
        _check_vs_naive(model, TOKENS[:60] if i != 3 else TOKENS[:80])
    _check_vs_naive(_fixture_model('tiny-all-off', lact_chunk_size=9, window_size=4, num_lact_heads=4),
                    TOKENS[:50])


@test
def a5_batch_rows_are_independent():
    model = _fixture_model('tiny-all-on').double()
    model.set_attn_impl('manual')
    rng = np.random.default_rng(0)
    batch = [TOKENS[:70]] + [list(rng.integers(0, 258, 70)) for _ in range(2)]
    with torch.no_grad():
        together = model(torch.tensor(batch))
        for i, row in enumerate(batch):
            alone = model(torch.tensor([row]))[0]
            assert (together[i] - alone).abs().max().item() < 1e-12


@test
def a6_prefix_consistency():
    # outputs at positions < t do not depend on later tokens (causality incl. the fast weights)
    model = _fixture_model('tiny-all-on').double()
    model.set_attn_impl('manual')
    with torch.no_grad():
        full = model(torch.tensor([TOKENS]))[0]
        for t in (1, 15, 16, 17, 48, 99):
            part = model(torch.tensor([TOKENS[:t]]))[0]
            assert (full[:t] - part).abs().max().item() < 1e-12, t


@test
def a7_sdpa_matches_manual_attention():
    if not hasattr(torch.nn.functional, 'scaled_dot_product_attention'):
        print('     (torch has no scaled_dot_product_attention: manual path only)')
        return
    model = _fixture_model('tiny-all-on').double()
    with torch.no_grad():
        model.set_attn_impl('auto')
        a = model(torch.tensor([TOKENS]))
        model.set_attn_impl('manual')
        b = model(torch.tensor([TOKENS]))
    assert (a - b).abs().max().item() < 1e-10


@test
def a9_blocked_attention_equals_manual():
    # the training/evaluation path (per-block attention, with more than 16 blocks so the grouping is
    # exercised) is the same function as the masked T x T attention, gradients included
    from lact.model import blocked_causal_attention, blocked_window_attention, window_mask
    g = torch.Generator().manual_seed(9)
    for T, W in ((37, 2), (100, 5), (64, 16)):
        q, k, v = (torch.randn(2, 3, T, 8, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
        for win in (W, None):
            s = (q @ k.transpose(-1, -2)) / math.sqrt(8)
            ref = torch.softmax(s.masked_fill(~window_mask(T, win), float('-inf')), -1) @ v
            got = blocked_window_attention(q, k, v, W) if win else blocked_causal_attention(q, k, v, W)
            assert (got - ref).abs().max().item() < 1e-12, (T, W, win)
            gr = torch.autograd.grad(ref.sum(), (q, k, v))
            gg = torch.autograd.grad(got.sum(), (q, k, v))
            assert max((a - b).abs().max().item() for a, b in zip(gr, gg)) < 1e-12, (T, W, win)
    for name in ('tiny-all-on', 'tiny-full'):
        model = _fixture_model(name).double()
        with torch.no_grad():
            model.set_attn_impl('manual')
            a = model(torch.tensor([TOKENS]))
            model.set_attn_impl('blocked')
            b = model(torch.tensor([TOKENS]))
        assert (a - b).abs().max().item() < 1e-10, name


@test
def a8_update_is_negative_gradient():
    g = torch.Generator().manual_seed(5)
    N, l, df, dh = 3, 9, 6, 10
    w0, w2 = torch.randn(N, dh, df, generator=g, dtype=torch.float64), torch.randn(N, dh, df, generator=g, dtype=torch.float64)
    w1 = torch.randn(N, df, dh, generator=g, dtype=torch.float64)
    k, v = torch.randn(N, l, df, generator=g, dtype=torch.float64), torch.randn(N, l, df, generator=g, dtype=torch.float64)
    lrs = [torch.rand(N, l, 1, generator=g, dtype=torch.float64) for _ in range(3)]
    d0, d1, d2 = swiglu_fw_update(w0, w1, w2, k, v, *lrs)
    for j, (d, lr) in enumerate(zip((d0, d1, d2), lrs)):
        ws = [w0.clone().requires_grad_(j == 0), w1.clone().requires_grad_(j == 1), w2.clone().requires_grad_(j == 2)]
        loss = -(lr * (swiglu_fw_apply(ws[0], ws[1], ws[2], k) * v)).sum()
        loss.backward()
        grad = ws[j].grad
        assert (d + grad).abs().max().item() < 1e-12, f'dW{j} is not the negative gradient'


@test
def b1_safetensors_round_trip():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 7, generator=g) * 3
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, 't.safetensors')
        tensors = {'a': x, 'b': x[:2], 'ints': torch.arange(-5, 6, dtype=torch.int32),
                   'longs': torch.tensor([2 ** 40, -3], dtype=torch.int64), 'scalar': torch.tensor(1.5)}
        for dt, tdt in (('F32', torch.float32), ('F16', torch.float16), ('BF16', torch.bfloat16)):
            save_safetensors(p, tensors, dtype=dt, metadata={'k': 'v'})
            back, meta = load_safetensors_with_metadata(p)
            assert meta == {'k': 'v'}
            assert set(back) == set(tensors)
            for name, t in tensors.items():
                b = back[name]
                assert list(b.shape) == list(t.shape), name
                if t.is_floating_point():
                    assert b.dtype == tdt, (name, b.dtype)
                    assert torch.equal(b, t.to(tdt)), name  # exactly the rounded values
                else:
                    assert b.dtype == t.dtype and torch.equal(b, t), name
            with open(p, 'rb') as f:
                raw = f.read()
            n = int.from_bytes(raw[:8], 'little')
            assert n % 8 == 0
            # byte-level check of the encoding of one value per float dtype
            hdr = raw[8:8 + n].decode()
            assert f'"dtype":"{dt}"' in hdr
        # BF16 bit pattern of 1.0 is 0x3F80, little-endian
        save_safetensors(p, {'one': torch.ones(1)}, dtype='BF16')
        raw = open(p, 'rb').read()
        assert raw[-2:] == b'\x80\x3f'


@test
def b2_fixture_files_are_current():
    # the committed fixtures equal what make_fixtures.py computes now (weights and golden logits)
    for name in mf.FIXTURES:
        d = os.path.join(mf.FIXTURE_DIR, name)
        w = load_safetensors(os.path.join(d, 'model.safetensors'))
        model = mf.make_model(name)
        sd = model.state_dict()
        assert set(w) == set(sd), name
        for k in sd:
            assert w[k].dtype == torch.float32 and torch.equal(w[k], sd[k]), (name, k)
        gold = load_safetensors(os.path.join(d, 'golden.safetensors'))
        assert gold['tokens'].dtype == torch.int32 and gold['tokens'].tolist() == TOKENS
        logits, hidden = _batched(model, TOKENS)
        assert np.abs(gold['logits'].double().numpy() - logits).max() < 1e-5 * max(1, np.abs(logits).max())
        assert len([k for k in gold if k.startswith('hidden.')]) == model.config.num_hidden_layers + 1
        for i, h in enumerate(hidden):
            assert gold[f'hidden.{i}'].shape == (len(TOKENS), model.config.hidden_size)
            assert np.abs(gold[f'hidden.{i}'].double().numpy() - h).max() < 1e-5 * max(1, np.abs(h).max())


@test
def b3_state_dict_names_match_config_ts():
    for name in mf.FIXTURES:
        model = mf.make_model(name)
        got = {k: list(v.shape) for k, v in model.state_dict().items()}
        assert got == expected_tensors(model.config), name
    # the intermediate-size default rule: D=64, hidden_ratio 4 -> 256
    assert LactConfig.from_dict(mf.FIXTURES['tiny-all-on']).mlp_intermediate_size == 256
    # config round trip keeps window_size null and the absent intermediate_size
    c = LactConfig.from_dict(mf.FIXTURES['tiny-full'])
    assert c.window_size is None and LactConfig.from_dict(c.to_dict()) == c
    c = LactConfig.from_dict(mf.FIXTURES['tiny-all-on'])
    assert 'intermediate_size' not in c.to_dict()


@test
def b4_export_load_round_trip():
    from lact import export_model, load_model
    model = _fixture_model('tiny-all-on')
    with tempfile.TemporaryDirectory() as d:
        for dt, tol in (('F32', 0.0), ('F16', 2e-2), ('BF16', 1e-1)):
            export_model(model, d, dt)
            back = load_model(d)
            assert back.config == model.config
            for k, v in model.state_dict().items():
                w = back.state_dict()[k]
                assert (w - v).abs().max().item() <= tol * max(1.0, v.abs().max().item()), (dt, k)


@test
def d1_gradients_reach_every_parameter():
    # training backpropagates through the test-time updates: every parameter gets a finite, non-zero grad
    for name in mf.FIXTURES:
        model = _fixture_model(name)
        model.set_attn_impl('manual')
        x = torch.tensor([TOKENS[:-1], TOKENS[1:]])
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x.roll(-1, 1).reshape(-1))
        loss.backward()
        for k, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), (name, k)
            assert p.grad.abs().max().item() > 0, (name, k)


@test
def d3_fw_input_grad_scale():
    # the pilot flag changes only the gradient: the forward is bit-identical, and the q/k/v projections'
    # gradient is attention's share plus s times the fast-weight branch's (linear in s, so the gradient at
    # s = 0.5 is the mean of those at 0 and 1)
    x = torch.tensor([TOKENS[:-1], TOKENS[1:]])

    def run(s):
        model = _fixture_model('tiny-all-on').double()
        model.set_attn_impl('manual')
        for layer in model.model.layers:
            layer.attn.fw_input_grad_scale = s
        logits = model(x)
        logits.pow(2).mean().backward()
        # the top layer's: in lower ones, the scaled paths of the layers above compound (a polynomial in s)
        return logits.detach(), model.model.layers[-1].attn.qkv.weight.grad.clone()

    (l1, g1), (l0, g0), (lh, gh) = run(1.0), run(0.0), run(0.5)
    assert torch.equal(l1, l0) and torch.equal(l1, lh)
    assert (g1 - g0).abs().max().item() > 1e-6, 'the branch sends no gradient into the projection'
    err = (gh - (g0 + g1) / 2).abs().max().item()
    print(f'     forward identical; |grad(0.5) - mean(grad(0), grad(1))| = {err:.1e}')
    assert err < 1e-12


@test
def d4_fw_own_qkv():
    # the pilot's own q/k/v projection for the fast-weight branch: named as expected_tensors says, read by
    # the branch (its weights move the logits) and trained (a gradient reaches it in every layer)
    x = torch.tensor([TOKENS[:-1], TOKENS[1:]])
    model = _fixture_model('tiny-all-on', fw_own_qkv=True).double()
    model.set_attn_impl('manual')
    names = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert names == expected_tensors(model.config), set(names) ^ set(expected_tensors(model.config))
    logits = model(x)
    logits.pow(2).mean().backward()
    for layer in model.model.layers:
        assert layer.attn.fw_qkv.weight.grad.abs().max().item() > 0
    with torch.no_grad():
        model.model.layers[0].attn.fw_qkv.weight.mul_(1.5)
        moved = (model(x) - logits).abs().max().item()
    print(f'     fw_qkv x1.5 in layer 0 moves the logits by {moved:.2e}')
    assert moved > 1e-6


@test
def d2_half_precision_forward_runs():
    model = _fixture_model('tiny-all-on')
    model.set_attn_impl('manual')
    with torch.no_grad():
        ref = model(torch.tensor([TOKENS]))
        out = model.to(torch.bfloat16)(torch.tensor([TOKENS])).float()
    assert torch.isfinite(out).all()
    err = ((out - ref).norm() / ref.norm()).item()
    print(f'     bf16 forward rel err vs f32: {err:.3e}')
    assert err < 0.5


@test
def c1_newton_schulz_singular_values():
    g = torch.Generator().manual_seed(3)
    for shape in ((32, 64), (64, 32), (40, 40)):
        G = torch.randn(2, *shape, generator=g, dtype=torch.float64)
        s = torch.linalg.svdvals(newton_schulz5(G))
        print(f'     {shape}: singular values {s.min().item():.3f}..{s.max().item():.3f}')
        assert s.min().item() > 0.6 and s.max().item() < 1.25, (shape, s.min(), s.max())
        # and it equals the numpy version in the naive test
        x = newton_schulz5(G[:1])[0].numpy()
        assert np.abs(x - _ns5(G[0].numpy())).max() < 1e-12


if __name__ == '__main__':
    torch.set_num_threads(1)
    sys.exit(1 if run_all() else 0)
