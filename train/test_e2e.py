"""Checks of the TTT-E2E twin (train/e2e/). Plain script (no pytest):

    /usr/bin/python3 train/test_e2e.py

Ends with "N passed, N failed" and exits non-zero on a failure. Everything runs in float64 on tiny models
(one CPU thread).
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from e2e import (E2EConfig, E2EForCausalLM, E2EStream, expected_tensors, export_model, load_model,  # noqa: E402
                 make_outer_optimizer, outer_loss, train_step, ttt_forward)
from e2e.inner import chunk_loss, clip_by_global_norm, global_norm, ttt_chunk  # noqa: E402
from e2e.model import KV, apply_rope, rope_angles, window_mask  # noqa: E402
from e2e.official import config_from_hyper, from_official, hyper_from_config, official_tensors, to_official  # noqa: E402
from lact.safetensors_io import load_safetensors, load_safetensors_with_metadata, save_safetensors  # noqa: E402
import make_e2e_fixtures as mf  # noqa: E402

from checks import Checks  # noqa: E402

_checks = Checks()
test = _checks.test
run_all = _checks.run_all


def cfg(**kw) -> E2EConfig:
    base = dict(vocab_size=256, hidden_size=16, num_heads=2, head_dim=8, intermediate_size_static_mlp=24,
                intermediate_size_dynamic_mlp=20, num_layers=3, num_ttt_layers=2, mini_batch_size=6,
                sliding_window=8, rope_theta=10000.0, bos_token_id=1, eos_token_id=2, inner_lr=1.0,
                inner_clip_global_norm=1.5)
    base.update(kw)
    return E2EConfig.from_dict(base)


def model_for(c: E2EConfig, seed: int = 0) -> E2EForCausalLM:
    return mf.randomize(E2EForCausalLM(c), seed).double()


def rand_tokens(n: int, seed: int = 0, bos_every: int = 0):
    g = torch.Generator().manual_seed(seed)
    t = torch.randint(3, 256, (n,), generator=g)
    t[0] = 1
    if bos_every:
        t[::bos_every] = 1
    return t


def rel(a, b) -> float:
    return float((a - b).norm() / max(float(b.norm()), 1e-300))


def assert_close(a, b, tol, what=''):
    e = rel(a, b)
    assert e <= tol, f'{what}: rel err {e:.3g} > {tol:g}'


# --------------------------------------------------------------------------------------------------
# config and names
# --------------------------------------------------------------------------------------------------

@test
def state_dict_names_are_expected_tensors():
    for c in (cfg(), cfg(num_ttt_layers=0), cfg(num_ttt_layers=3),
              E2EConfig.from_dict(mf.FIXTURES['tiny-e2e-s1']), E2EConfig.from_dict(mf.FIXTURES['tiny-e2e-s2'])):
        m = E2EForCausalLM(c)
        got = {k: list(v.shape) for k, v in m.state_dict().items()}
        assert got == expected_tensors(c), (sorted(set(got) ^ set(expected_tensors(c))))
        n_dyn = sum(1 for k in got if '.dyn_' in k)
        assert n_dyn == 5 * c.num_ttt_layers
        for i in range(c.num_layers):
            assert (f'model.layers.{i}.dyn_mlp.w1.weight' in got) == (i >= c.num_layers - c.num_ttt_layers)
        assert 'lm_head.weight' not in got


@test
def config_round_trip_and_validation():
    c = cfg()
    assert E2EConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    d = c.to_dict()
    assert d['model_type'] == 'ttt_e2e' and d['tie_word_embeddings'] is True and d['tokenizer'] == 'byte'
    d2 = dict(d)
    del d2['tie_word_embeddings']
    d2['tied_head'] = True
    assert E2EConfig.from_dict(d2) == c
    d3 = dict(d, some_future_key=3)
    assert E2EConfig.from_dict(d3).to_dict()['some_future_key'] == 3
    for bad in (dict(tie_word_embeddings=False), dict(head_dim=4), dict(model_type='lact_swiglu'),
                dict(num_ttt_layers=4), dict(tokenizer='bpe'), dict(bos_token_id=256), dict(head_dim=7, num_heads=2, hidden_size=14)):
        try:
            E2EConfig.from_dict(dict(d, **bad))
        except ValueError:
            continue
        raise AssertionError(f'accepted {bad}')


# --------------------------------------------------------------------------------------------------
# the inner loop
# --------------------------------------------------------------------------------------------------

def chunk1_setup(c: E2EConfig, seed: int = 3):
    """Model, tokens, theta after chunk 0 and a function chunk-1 loss(theta) with chunk 0's K/V fixed."""
    m = model_for(c, seed)
    B, W = c.mini_batch_size, c.sliding_window
    t = rand_tokens(3 * B, seed)
    r = ttt_forward(m, t[:B + 1], n_inputs=B, keep_thetas=True)  # one update: chunk 0, K/V of 0..B-1
    assert r.n_updates == 1
    theta1 = [tuple(w.clone() for w in th) for th in r.thetas[0]]
    with torch.no_grad():
        h_pre = m.prefix(t[:2 * B])
    past = [KV.cat(kv).last(W - 1) for kv in r.kv]
    pos = torch.arange(B, 2 * B)
    targets = t[B + 1:2 * B + 1]

    def loss_of(theta):
        lg, _, _ = ttt_chunk(m, h_pre[B:2 * B], pos, past, theta)
        return chunk_loss(lg, targets, c.bos_token_id)[0]
    return m, t, theta1, loss_of


@test
def chunk_gradient_matches_finite_differences():
    """d loss_i / d theta by autograd (through block j>0's attention over the chunk, whose K/V depend on
    block 0's theta) against central differences, float64; the earlier chunk's K/V are constants."""
    c = cfg(mini_batch_size=6, sliding_window=8)
    m, t, theta1, loss_of = chunk1_setup(c)
    flat = [w.clone().requires_grad_(True) for th in theta1 for w in th]
    th = [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]
    grads = torch.autograd.grad(loss_of(th), flat)
    g = torch.Generator().manual_seed(7)
    eps = 1e-5  # central differences: truncation ~eps^2, roundoff ~1e-16 * loss / eps
    worst = 0.0
    with torch.no_grad():
        for wi, w in enumerate(flat):
            for _ in range(12):  # random entries of every tensor
                idx = tuple(int(torch.randint(0, s, (1,), generator=g)) for s in w.shape)
                base = [x.detach().clone() for x in flat]
                plus = [x.clone() for x in base]
                minus = [x.clone() for x in base]
                plus[wi][idx] += eps
                minus[wi][idx] -= eps
                fd = (loss_of([tuple(plus[i:i + 3]) for i in range(0, len(plus), 3)]) -
                      loss_of([tuple(minus[i:i + 3]) for i in range(0, len(minus), 3)])) / (2 * eps)
                a = grads[wi][idx]
                worst = max(worst, abs(float(fd - a)) / (abs(float(a)) + 1e-3))
            for _ in range(2):  # random directions over all tensors together
                dirs = [torch.randn(x.shape, generator=g, dtype=x.dtype) for x in flat]
                plus = [x.detach() + eps * d for x, d in zip(flat, dirs)]
                minus = [x.detach() - eps * d for x, d in zip(flat, dirs)]
                fd = (loss_of([tuple(plus[i:i + 3]) for i in range(0, len(plus), 3)]) -
                      loss_of([tuple(minus[i:i + 3]) for i in range(0, len(minus), 3)])) / (2 * eps)
                a = sum((gg * d).sum() for gg, d in zip(grads, dirs))
                worst = max(worst, abs(float(fd - a)) / (abs(float(a)) + 1e-3))
    assert worst < 1e-6, f'finite differences disagree: {worst:.3g}'  # |fd - g| / (|g| + 1e-3)
    print(f'  chunk gradient: max |fd - autograd| / (|autograd| + 1e-3) = {worst:.2e}')
    # and the block-0 gradient really includes the path through block 1's attention over the chunk:
    assert float(grads[0].norm()) > 0 and float(grads[3].norm()) > 0


@test
def update_is_clipped_sgd_on_that_gradient():
    c = cfg()
    m, t, theta1, loss_of = chunk1_setup(c)
    B = c.mini_batch_size
    r = ttt_forward(m, t[:2 * B + 1], keep_thetas=True)
    assert r.n_updates == 2
    flat = [w.clone().requires_grad_(True) for th in theta1 for w in th]
    grads = torch.autograd.grad(loss_of([tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]), flat)
    n = float(global_norm(grads))
    assert abs(n - r.grad_norms[1]) < 1e-12 * n
    scale = min(1.0, c.inner_clip_global_norm / n)
    assert abs(scale - r.clip_scales[1]) < 1e-12
    new = [w.detach() - c.inner_lr * scale * gg for w, gg in zip(flat, grads)]
    got = [w for th in r.thetas[1] for w in th]
    for a, b in zip(got, new):
        assert_close(a, b, 1e-12, 'theta after chunk 1')


@test
def inner_rate_zero_is_plain_sliding_window_forward():
    for c in (cfg(), cfg(num_ttt_layers=0), cfg(num_ttt_layers=3, mini_batch_size=4, sliding_window=3)):
        m = model_for(c, 5)
        t = rand_tokens(29, 5)
        r = ttt_forward(m, t, inner_lr=0.0)
        with torch.no_grad():
            ref = m(t)
        assert_close(r.logits, ref, 1e-13, 'lr 0')
        # one chunk as long as the sequence: no update at all
        c2 = c.replace(mini_batch_size=40)
        m.config = c2
        r2 = ttt_forward(m, t)
        assert r2.n_updates == 0
        assert_close(r2.logits, ref, 1e-13, 'B > T')
    # and the plain forward itself equals a masked-attention-free check: window 1 attends only to itself
    c = cfg(sliding_window=1, num_ttt_layers=1)
    m = model_for(c, 6)
    t = rand_tokens(10, 6)
    with torch.no_grad():
        full = m(t)
        single = torch.stack([m(t[i:i + 1])[0] for i in range(10)])  # rope is a no-op on q.k at lag 0
    assert_close(full, single, 1e-12, 'window 1')


@test
def first_chunk_and_causality():
    c = cfg()
    m = model_for(c, 8)
    t = rand_tokens(30, 8)
    r = ttt_forward(m, t)
    B = c.mini_batch_size
    for cut in (B, B + 3, 2 * B, 2 * B + 1, 29):
        r2 = ttt_forward(m, t[:cut])
        # outputs at positions < cut do not depend on later tokens
        assert_close(r2.logits, r.logits[:cut], 1e-13, f'prefix {cut}')
        assert r2.n_updates == (cut - 1) // B


def stream_vs_chunked(c: E2EConfig, T: int, seed: int, bos_every: int = 0):
    m = model_for(c, seed)
    t = rand_tokens(T, seed, bos_every)
    r = ttt_forward(m, t, keep_thetas=True)
    st = E2EStream(m)
    sl = torch.stack([st.feed(int(x)) for x in t])
    assert_close(sl, r.logits, 1e-10, f'stream logits {c}')
    assert st.n_updates == r.n_updates == ((T - 1) // c.mini_batch_size if c.num_ttt_layers else 0)
    for a, b in zip(st.grad_norms, r.grad_norms):
        assert abs(a - b) <= 1e-10 * b
    for ta, tb in zip(st.thetas, r.thetas):
        for la, lb in zip(ta, tb):
            for a, b in zip(la, lb):
                assert_close(a, b, 1e-10, 'stream theta')
    return m, t, r


@test
def streaming_equals_chunked():
    for name in mf.FIXTURES:
        stream_vs_chunked(E2EConfig.from_dict(mf.FIXTURES[name]), 90, 11)
    shapes = [
        dict(mini_batch_size=6, sliding_window=8),      # W > B
        dict(mini_batch_size=8, sliding_window=3),      # W < B
        dict(mini_batch_size=5, sliding_window=1),      # window 1
        dict(mini_batch_size=1, sliding_window=4),      # B = 1: an update after every token
        dict(mini_batch_size=7, sliding_window=100),    # W > T: full attention
        dict(num_ttt_layers=3, mini_batch_size=4, sliding_window=6),  # S = L
        dict(num_ttt_layers=0, mini_batch_size=4, sliding_window=6),  # S = 0: a plain SWA model
        dict(num_ttt_layers=1, inner_clip_global_norm=0.0),           # no clip
    ]
    for i, kw in enumerate(shapes):
        c = cfg(**kw)
        for T in (3 * c.mini_batch_size, 3 * c.mini_batch_size + 1, 23):
            stream_vs_chunked(c, T, 20 + i, bos_every=9)


@test
def prefill_then_decode_equals_chunked():
    c = cfg(mini_batch_size=6, sliding_window=8)
    m = model_for(c, 31)
    t = rand_tokens(40, 31)
    r = ttt_forward(m, t, keep_thetas=True)
    for P in (1, 5, 6, 7, 12, 13, 17, 18, 39, 40):
        st, pl = E2EStream.from_prefill(m, [int(x) for x in t[:P]])
        assert st.n_updates == (P - 1) // 6
        assert_close(pl, r.logits[:P], 1e-13, f'prefill {P}')
        if P < 40:
            dl = torch.stack([st.feed(int(x)) for x in t[P:]])
            assert_close(dl, r.logits[P:], 1e-10, f'decode after prefill {P}')
        assert st.n_updates == r.n_updates
        for a, b in zip(st.theta, r.theta):
            for x, y in zip(a, b):
                assert_close(x, y, 1e-10, 'final theta')


@test
def chunked_attention_equals_official_chunk_formula():
    """The official SWA chunk path caches the W most recent normed, UN-roped keys (zeros at first), ropes
    keys at 0..W+B-1 and queries at W..W+B-1, and masks qi >= ki, qi < ki + W, ki >= 0 with absolute
    indices. RoPE being relative, that equals absolute-position RoPE with the window mask used here."""
    c = cfg(sliding_window=7, mini_batch_size=5)
    m = model_for(c, 41)
    at = m.model.layers[0].attn
    H, hd, W, B = c.num_heads, c.head_dim, c.sliding_window, c.mini_batch_size
    T = 4 * B
    a = torch.randn(T, c.hidden_size, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        q, k, v = at.project(a, torch.arange(T))
        ours = at.attend(q, k, v, torch.arange(T), torch.arange(T))

        def heads(x):
            return x.view(-1, H, hd)
        cache_k = torch.zeros(W, H, hd, dtype=torch.float64)
        cache_v = torch.zeros(W, H, hd, dtype=torch.float64)
        outs = []
        for ch in range(T // B):
            x = a[ch * B:(ch + 1) * B]
            xq = at.q_norm(heads(at.q_proj(x)))
            xk = at.k_norm(heads(at.k_proj(x)))
            xv = heads(at.v_proj(x))
            K = torch.cat([cache_k, xk], 0)
            V = torch.cat([cache_v, xv], 0)
            cache_k, cache_v = K[-W:], V[-W:]
            rq = apply_rope(xq.transpose(0, 1), rope_angles(torch.arange(W, W + B), hd, c.rope_theta))
            rk = apply_rope(K.transpose(0, 1), rope_angles(torch.arange(W + B), hd, c.rope_theta))
            qi = (torch.arange(B) + ch * B)[:, None]
            ki = (torch.arange(-(W + B), 0) + ch * B + B)[None, :]
            mask = (qi >= ki) & (qi < ki + W) & (ki >= 0)
            s = (rq @ rk.transpose(-1, -2)) / math.sqrt(hd)
            s = s.masked_fill(~mask, float('-inf'))
            o = torch.softmax(s, -1) @ V.transpose(0, 1)
            outs.append(at.o_proj(o.transpose(0, 1).reshape(B, -1)))
        off = torch.cat(outs, 0)
    assert_close(ours, off, 1e-12, 'official chunk attention')
    assert bool(window_mask(torch.tensor([10]), torch.arange(12), W).sum() == W)


# --------------------------------------------------------------------------------------------------
# clip, BOS, NaN
# --------------------------------------------------------------------------------------------------

@test
def clip_behaviour():
    g1 = torch.full((3,), 1.0, dtype=torch.float64) * (3 / math.sqrt(3))  # norm 3
    g2 = torch.tensor([4.0], dtype=torch.float64)                           # norm 4 -> global 5
    out, n, s = clip_by_global_norm([g1, g2], 1.0)
    assert abs(n - 5) < 1e-12 and abs(s - 0.2) < 1e-12
    assert_close(out[0], g1 * 0.2, 1e-15) and assert_close(out[1], g2 * 0.2, 1e-15)  # one norm, not per tensor
    out, n, s = clip_by_global_norm([g1, g2], 10.0)
    assert s == 1.0 and out[0] is g1
    out, n, s = clip_by_global_norm([g1, g2], 5.0)  # ||g|| >= max_norm: scaled (by exactly 1)
    assert abs(s - 1.0) < 1e-15
    out, n, s = clip_by_global_norm([g1, g2], 0.0)  # disabled
    assert s == 1.0
    # in the loop: ||theta_i - theta_{i-1}|| = lr * min(||g||, clip) over all S blocks together
    c = cfg(inner_lr=0.7, inner_clip_global_norm=1.0)
    m = model_for(c, 51)
    t = rand_tokens(4 * c.mini_batch_size + 1, 51)
    r = ttt_forward(m, t, keep_thetas=True)
    prev = [w.detach() for th in m.initial_theta() for w in th]
    for i in range(r.n_updates):
        cur = [w for th in r.thetas[i] for w in th]
        step = float(global_norm([a - b for a, b in zip(cur, prev)]))
        want = 0.7 * min(r.grad_norms[i], 1.0)
        assert abs(step - want) < 1e-10, (i, step, want)
        assert (r.clip_scales[i] < 1) == (r.grad_norms[i] >= 1.0)
        prev = cur
    r_noclip = ttt_forward(m, t, clip=0.0)
    assert all(s == 1.0 for s in r_noclip.clip_scales)
    assert rel(r_noclip.logits, r.logits) > 1e-3  # the clip mattered here
    assert any(s < 1 for s in r.clip_scales)


@test
def bos_targets_are_skipped_and_all_bos_chunk_is_harmless():
    logits = torch.randn(5, 256, dtype=torch.float64)
    tg = torch.tensor([1, 7, 1, 9, 1])
    loss, nll, valid = chunk_loss(logits, tg, 1)
    assert abs(float(loss) - float((nll[1] + nll[3]) / 2)) < 1e-14
    loss, _, _ = chunk_loss(logits, torch.ones(5, dtype=torch.long), 1)
    assert float(loss) == 0.0
    c = cfg()
    B = c.mini_batch_size
    m = model_for(c, 61)
    t = rand_tokens(4 * B + 1, 61)
    t[B + 1:2 * B + 1] = 1  # every target of chunk 1 is BOS (and BOS inputs inside the sequence)
    r = ttt_forward(m, t, keep_thetas=True)
    assert float(r.chunk_losses[1]) == 0.0 and r.grad_norms[1] == 0.0 and r.clip_scales[1] == 1.0
    for a, b in zip(r.thetas[0], r.thetas[1]):
        for x, y in zip(a, b):
            assert torch.equal(x, y)  # no update from an all-BOS chunk
    assert torch.isfinite(r.logits).all()
    # the streaming path agrees, and the outer gradient through the all-BOS chunk has no NaN
    st = E2EStream(m)
    assert_close(torch.stack([st.feed(int(x)) for x in t]), r.logits, 1e-10, 'stream with BOS chunk')
    m.zero_grad()
    outer_loss(m, t).backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    # a BOS input does not mask attention: changing the tokens before a BOS changes what follows it
    t2 = t.clone()
    t2[B - 2] = 77 if int(t[B - 2]) != 77 else 78
    r2 = ttt_forward(m, t2)
    assert rel(r2.logits[B + 1:B + 3], r.logits[B + 1:B + 3]) > 1e-6


# --------------------------------------------------------------------------------------------------
# the outer loop
# --------------------------------------------------------------------------------------------------

@test
def outer_gradient_reaches_everything_and_is_second_order():
    c = cfg(mini_batch_size=4, sliding_window=5, inner_lr=0.5, inner_clip_global_norm=100.0)
    m = model_for(c, 71)
    t = rand_tokens(3 * 4 + 1, 71)
    m.zero_grad()
    loss = outer_loss(m, t)
    loss.backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and float(p.grad.abs().max()) > 0, n
    # directional derivative over ALL parameters against central differences of the whole outer loss
    # (every inner step recomputed): only a true second-order gradient matches
    g = torch.Generator().manual_seed(9)
    params = list(m.parameters())
    dirs = [torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params]
    analytic = sum(float((p.grad * d).sum()) for p, d in zip(params, dirs))
    eps = 1e-6  # the directional derivative is large (~30): truncation dominates at 1e-5
    saved = [p.detach().clone() for p in params]

    def at(sign):
        with torch.no_grad():
            for p, s0, d in zip(params, saved, dirs):
                p.copy_(s0 + sign * eps * d)
        return float(torch.stack(ttt_forward(m, t, n_inputs=12).chunk_losses).mean())
    fd = (at(+1) - at(-1)) / (2 * eps)
    with torch.no_grad():
        for p, s0 in zip(params, saved):
            p.copy_(s0)
    assert abs(fd - analytic) < 1e-6 * max(1.0, abs(analytic)), (fd, analytic)
    print(f'  outer gradient along a random direction: autograd {analytic:.10f}, central difference {fd:.10f}')
    # the first-order approximation (inner gradients as constants) is measurably different
    from e2e import inner as inner_mod
    orig = inner_mod.inner_step

    def first_order(loss, theta, lr, max_norm, create_graph):
        new, n, s = orig(loss, theta, lr, max_norm, create_graph)
        flat_old = [w for th in theta for w in th]
        flat_new = [w for th in new for w in th]
        return inner_mod.unflatten_theta([o + (nw - o).detach() for o, nw in zip(flat_old, flat_new)]), n, s
    inner_mod.inner_step = first_order
    try:
        m.zero_grad()
        outer_loss(m, t).backward()
        fo = sum(float((p.grad * d).sum()) for p, d in zip(params, dirs))
    finally:
        inner_mod.inner_step = orig
    assert abs(fo - analytic) > 1e-4 * abs(analytic), (fo, analytic)
    print(f'  first-order approximation instead: {fo:.10f}')


@test
def train_step_smoke():
    torch.manual_seed(0)
    c = cfg(mini_batch_size=4, sliding_window=5)
    m = model_for(c, 81)
    batch = [rand_tokens(3 * 4 + 1, 81 + i) for i in range(2)]
    opt = make_outer_optimizer(m, lr=3e-3)
    losses = [train_step(m, opt, batch)[0] for _ in range(6)]
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0], losses
    try:
        outer_loss(m, rand_tokens(13 + 1, 1))
    except ValueError:
        pass
    else:
        raise AssertionError('a training sequence must hold n*B + 1 tokens')


@test
def float32_twin_matches_float64():
    c = E2EConfig.from_dict(mf.FIXTURES['tiny-e2e-s2'])
    m = mf.make_model('tiny-e2e-s2')
    t = torch.tensor(mf.fixture_tokens())
    r32 = ttt_forward(m.float(), t)
    r64 = ttt_forward(m.double(), t)
    assert r32.logits.dtype == torch.float32
    assert_close(r32.logits.double(), r64.logits, 1e-5, 'f32 vs f64')
    assert r32.n_updates == r64.n_updates == 5 and c.num_ttt_layers == 2


# --------------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------------

@test
def convert_round_trip():
    for c in (E2EConfig.from_dict(mf.FIXTURES['tiny-e2e-s2']), cfg(num_ttt_layers=0), cfg(vocab_size=300, tokenizer='tokenizer.json')):
        m = mf.randomize(E2EForCausalLM(c), 91)
        sd = {k: v.detach() for k, v in m.state_dict().items()}
        flat = to_official(sd, c)
        assert {k: list(v.shape) for k, v in flat.items()} == official_tensors(c)
        L, S = c.num_layers, c.num_ttt_layers
        x = torch.randn(3, c.hidden_size)
        for i in range(L):  # the official y = x @ W[i] equals the project y = x @ W^T
            assert torch.allclose(x @ flat['language_model.model.h.blocks.seq_modeling_block.wq.weight'][i],
                                  torch.nn.functional.linear(x, sd[f'model.layers.{i}.attn.q_proj.weight']))
        for j in range(S):
            assert torch.equal(flat['language_model.model.h.prime_storage.feed_forward_prime.w2.weight'][j],
                               sd[f'model.layers.{L - S + j}.dyn_mlp.w2.weight'].T)
        with tempfile.TemporaryDirectory() as d:
            w, hyp, out = os.path.join(d, 'w.safetensors'), os.path.join(d, 'h.json'), os.path.join(d, 'out')
            save_safetensors(w, flat, dtype='F32')
            with open(hyp, 'w') as f:
                json.dump(hyper_from_config(c), f)
            subprocess.run([sys.executable, os.path.join(HERE, 'convert_e2e.py'), w, hyp, out], check=True,
                           capture_output=True)
            back = load_model(out, torch.float32)
            assert back.config == c, (back.config, c)
            for k, v in back.state_dict().items():
                assert torch.equal(v, sd[k]), k
            # and the inverse CLI reproduces the official file exactly
            w2, hyp2 = os.path.join(d, 'w2.safetensors'), os.path.join(d, 'h2.json')
            subprocess.run([sys.executable, os.path.join(HERE, 'convert_e2e.py'), '--to-official', out, w2, hyp2],
                           check=True, capture_output=True)
            f2 = load_safetensors(w2)
            assert set(f2) == set(flat) and all(torch.equal(f2[k], flat[k]) for k in flat)
            with open(hyp2) as f:
                h2 = json.load(f)
            assert config_from_hyper(h2, tokenizer=c.tokenizer) == c
        assert c.vocab_size != 256 or config_from_hyper(hyper_from_config(c)).tokenizer == 'byte'
    # refusals: a transposed leaf, a missing leaf, a missing hyperparameter
    c = cfg()
    flat = to_official({k: v.detach() for k, v in E2EForCausalLM(c).state_dict().items()}, c)
    for broken in (dict(flat, **{'language_model.model.h.blocks.feed_forward.w2.weight':
                                 flat['language_model.model.h.blocks.feed_forward.w1.weight']}),
                   {k: v for k, v in flat.items() if 'ln_f' not in k}):
        try:
            from_official(broken, c)
        except ValueError:
            continue
        raise AssertionError('accepted a broken official tree')
    h = hyper_from_config(c)
    del h['inner_lr']
    try:
        config_from_hyper(h)
    except ValueError:
        pass
    else:
        raise AssertionError('accepted a hyperparameter JSON without inner_lr')


# --------------------------------------------------------------------------------------------------
# the fixtures on disk
# --------------------------------------------------------------------------------------------------

@test
def fixtures_on_disk_are_what_the_script_computes():
    for name in mf.FIXTURES:
        d = os.path.join(mf.FIXTURE_DIR, name)
        with open(os.path.join(d, 'config.json')) as f:
            assert json.load(f) == E2EConfig.from_dict(mf.FIXTURES[name]).to_dict()
        sd = load_safetensors(os.path.join(d, 'model.safetensors'))
        fresh = mf.make_model(name).state_dict()
        assert set(sd) == set(fresh) and all(torch.equal(sd[k], fresh[k]) for k in sd), name
        gold, meta = load_safetensors_with_metadata(os.path.join(d, 'golden.safetensors'))
        m = load_model(d, torch.float64)
        c = m.config
        toks = [int(x) for x in gold['tokens']]
        assert toks == mf.fixture_tokens() and len(toks) >= 5 * c.mini_batch_size + 1
        assert toks.count(c.bos_token_id) >= 2 and toks[0] == c.bos_token_id
        r = mf.golden(m, toks)
        assert torch.equal(gold['logits'], r.logits.float())
        assert torch.equal(gold['nll'], r.nll.float())
        assert torch.equal(gold['grad_norm'], torch.tensor(r.grad_norms, dtype=torch.float64).float())
        assert int(meta['n_updates']) == r.n_updates >= 5
        cs = gold['clip_scale']
        assert bool((cs < 1).any()) and bool((cs == 1).any()), cs
        for ci in range(r.n_updates):
            for j, li in enumerate(c.ttt_layers):
                for wi, w in enumerate(('w1', 'w2', 'w3')):
                    assert torch.equal(gold[f'theta.{ci}.layers.{li}.{w}'], r.thetas[ci][j][wi].float())
        assert gold['logits'].shape == (len(toks), c.vocab_size)
        assert rel(gold['logits'][16:].double(), gold['logits_static'][16:].double()) > 0.1


if __name__ == '__main__':
    torch.set_num_threads(1)
    sys.exit(1 if run_all() else 0)
