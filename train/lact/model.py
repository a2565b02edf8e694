"""The LaCT language model in PyTorch, written from shared/spec/lact-language-model.md.

Module and parameter names reproduce the official `LaCTForCausalLM` state dict exactly, so
`model.state_dict()` is a checkpoint the TypeScript engine (and the official code) loads unchanged.

Forward runs a batch [B, T] of token ids from position 0 (training / prefill form): attention is one
masked matmul per layer, the fast weights are processed one chunk at a time with batched matmuls over
(batch x fast-weight heads). Everything is differentiable (training backpropagates through the
test-time updates). Dtype follows the parameters: call `.double()` for a float64 reference.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import LactConfig

BASE_LR = 0.001
NS_COEFFS = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)


def inv_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


BASE_LR_INV = inv_softplus(BASE_LR)


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight (over the last dim). Half inputs are normed in f32."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dt = x.dtype
        xf = x.float() if dt in (torch.float16, torch.bfloat16) else x
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.to(y.dtype)).to(dt)


def rope_cos_sin(T: int, head_dim: int, theta: float, offset: int = 0, device=None,
                 dtype=torch.float32) -> Tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, head_dim] (both halves repeated), computed in float64 then cast."""
    inv_freq = 1.0 / (float(theta) ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    pos = torch.arange(offset, offset + T, dtype=torch.float64)
    ang = pos[:, None] * inv_freq[None, :]
    ang = torch.cat([ang, ang], dim=-1)
    return ang.cos().to(device=device, dtype=dtype), ang.sin().to(device=device, dtype=dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE. x [..., T, H, d]; cos/sin [T, d]."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    rot = torch.cat([-x2, x1], dim=-1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def scale_grad(x: torch.Tensor, s: float) -> torch.Tensor:
    """x in the forward pass; s times its gradient in the backward (s = 0: detached)."""
    if s == 1.0:
        return x
    if s == 0.0:
        return x.detach()
    d = x.detach()
    return d + s * (x - d)


def l2_norm(x: torch.Tensor) -> torch.Tensor:
    return x / (x.norm(dim=-1, keepdim=True) + 1e-5)


def newton_schulz5(G: torch.Tensor) -> torch.Tensor:
    """Official zeropower_via_newtonschulz5 on [N, a, b], in the input's precision (not bf16)."""
    assert G.dim() == 3
    X = G
    transposed = G.size(1) > G.size(2)
    if transposed:
        X = X.transpose(1, 2)
    X = X / (X.norm(dim=(1, 2), keepdim=True) + 1e-7)
    for a, b, c in NS_COEFFS:
        A = X @ X.transpose(1, 2)
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    if transposed:
        X = X.transpose(1, 2)
    return X


def silu_backprop(dy: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(x)
    return dy * s * (1 + x * (1 - s))


def swiglu_fw_apply(w0, w1, w2, x):
    """f(x) = W1 (silu(W0 x) * (W2 x)) for rows x [N, l, df]; W0, W2 [N, dh, df], W1 [N, df, dh]."""
    g = x @ w0.transpose(1, 2)
    u = x @ w2.transpose(1, 2)
    return (F.silu(g) * u) @ w1.transpose(1, 2)


def swiglu_fw_update(w0, w1, w2, k, v, lr0, lr1, lr2):
    """Negative gradient of L = -sum_i lr_i <f(k_i), v_i>: (dW0, dW1, dW2). k, v [N, l, df]; lr [N, l, 1]."""
    G = k @ w0.transpose(1, 2)             # [N, l, dh]
    U = k @ w2.transpose(1, 2)             # [N, l, dh]
    sG = F.silu(G)
    Hd = sG * U
    P = v @ w1                             # [N, l, dh]
    dW1 = v.transpose(1, 2) @ (Hd * lr1)   # [N, df, dh]
    dG = silu_backprop(P * U, G)
    dW0 = dG.transpose(1, 2) @ (k * lr0)   # [N, dh, df]
    dW2 = (P * sG).transpose(1, 2) @ (k * lr2)
    return dW0, dW1, dW2


def block_causal_fast_weights(w0, w1, w2, q, k, v, lr0, lr1, lr2, chunk_size: int,
                              use_muon: bool, momentum: Optional[torch.Tensor],
                              update: bool = True) -> torch.Tensor:
    """Apply-then-update over chunks aligned to position 0. All [N, T, .]; returns [N, T, df].

    Chunk c's tokens are applied with the weights after chunk c-1; the last (possibly partial) chunk is
    applied but not learned (its update could not change any output). `update=False` freezes the weights
    (a diagnostic, not a model option).
    """
    T = q.shape[1]
    n0 = w0.norm(dim=2, keepdim=True)
    n1 = w1.norm(dim=2, keepdim=True)
    n2 = w2.norm(dim=2, keepdim=True)
    m0 = m1 = m2 = None
    outs = []
    for s in range(0, T, chunk_size):
        e = min(s + chunk_size, T)
        outs.append(swiglu_fw_apply(w0, w1, w2, q[:, s:e]))
        if e >= T or not update:
            continue
        dw0, dw1, dw2 = swiglu_fw_update(w0, w1, w2, k[:, s:e], v[:, s:e],
                                         lr0[:, s:e], lr1[:, s:e], lr2[:, s:e])
        if momentum is not None:
            mi = momentum[:, s:e].mean(dim=1, keepdim=True)  # [N, 1, 1]
            if m0 is not None:
                dw0 = dw0 + mi * m0
                dw1 = dw1 + mi * m1
                dw2 = dw2 + mi * m2
            m0, m1, m2 = dw0, dw1, dw2
        if use_muon:
            dw0, dw1, dw2 = newton_schulz5(dw0), newton_schulz5(dw1), newton_schulz5(dw2)
        w0 = w0 + dw0
        w1 = w1 + dw1
        w2 = w2 + dw2
        w0 = w0 / (w0.norm(dim=2, keepdim=True) + 1e-5) * n0
        w1 = w1 / (w1.norm(dim=2, keepdim=True) + 1e-5) * n1
        w2 = w2 / (w2.norm(dim=2, keepdim=True) + 1e-5) * n2
    return torch.cat(outs, dim=1)


class LowRankFastWeight(nn.Module):
    """Initial W = w_left @ w_right + 0.5 * eye(out, in): w_left [H, out, r], w_right [H, r, in]."""

    def __init__(self, num_heads: int, out_features: int, in_features: int, rank: int):
        super().__init__()
        self.rank = rank
        self.out_features, self.in_features = out_features, in_features
        self.w_left = nn.Parameter(torch.zeros(num_heads, out_features, rank))
        self.w_right = nn.Parameter(torch.zeros(num_heads, rank, in_features))

    def forward(self) -> torch.Tensor:
        W = self.w_left @ self.w_right
        eye = torch.eye(self.out_features, self.in_features, device=W.device).to(W.dtype)
        return W + 0.5 * eye.unsqueeze(0)


def window_mask(T: int, window: Optional[int], device=None) -> torch.Tensor:
    """Bool [T, T]: query p may see key j iff j <= p and (window is None or j > p - window)."""
    p = torch.arange(T, device=device)[:, None]
    j = torch.arange(T, device=device)[None, :]
    m = j <= p
    if window is not None:
        m = m & (j > p - window)
    return m


def blocked_window_attention(q, k, v, W: int) -> torch.Tensor:
    """Sliding-window causal attention (query p sees keys p-W < j <= p) computed block by block.

    The same function as the masked T x T form, but each block of W queries only scores the 2W keys it
    can see: T*2W scores instead of T*T, which is what makes training on sequences of many windows
    affordable on a CPU. q, k, v [B, H, T, d] -> [B, H, T, d].
    """
    B, H, T, d = q.shape
    nb = -(-T // W)
    pad = nb * W - T
    qp = F.pad(q, (0, 0, 0, pad)).view(B, H, nb, W, d)
    kp = F.pad(k, (0, 0, W, pad))  # W zero keys in front: block i sees keys [(i-1)W, (i+1)W)
    vp = F.pad(v, (0, 0, W, pad))
    kk = torch.cat([kp[:, :, :-W].reshape(B, H, nb, W, d), kp[:, :, W:].reshape(B, H, nb, W, d)], dim=3)
    vv = torch.cat([vp[:, :, :-W].reshape(B, H, nb, W, d), vp[:, :, W:].reshape(B, H, nb, W, d)], dim=3)
    r = torch.arange(W, device=q.device)[:, None]
    j = torch.arange(2 * W, device=q.device)[None, :]
    allowed = (j > r) & (j <= r + W)                                    # [W, 2W]
    mask = allowed.unsqueeze(0).repeat(nb, 1, 1)
    mask[0] &= (j >= W).expand(W, 2 * W)                                # block 0: no keys before 0
    outs = []
    group = 16  # blocks scored at once: bounds the score tensor on long evaluation sequences
    for g in range(0, nb, group):
        e = min(g + group, nb)
        s = (qp[:, :, g:e] @ kk[:, :, g:e].transpose(-1, -2)) * (1.0 / math.sqrt(d))   # [B, H, n, W, 2W]
        s = s.masked_fill(~mask[g:e], float('-inf'))
        outs.append(torch.softmax(s, dim=-1) @ vv[:, :, g:e])                          # [B, H, n, W, d]
    o = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
    return o.reshape(B, H, nb * W, d)[:, :, :T]


def blocked_causal_attention(q, k, v, block: int) -> torch.Tensor:
    """Full causal attention, one block of queries at a time against the keys before its end: skips the
    masked upper triangle (about half the T x T work). q, k, v [B, H, T, d] -> [B, H, T, d]."""
    T, d = q.shape[2], q.shape[3]
    outs = []
    for s0 in range(0, T, block):
        e = min(s0 + block, T)
        s = (q[:, :, s0:e] @ k[:, :, :e].transpose(-1, -2)) * (1.0 / math.sqrt(d))   # [B, H, e-s0, e]
        mask = torch.arange(e, device=q.device)[None, :] <= torch.arange(s0, e, device=q.device)[:, None]
        s = s.masked_fill(~mask, float('-inf'))
        outs.append(torch.softmax(s, dim=-1) @ v[:, :, :e])
    return torch.cat(outs, dim=2)


class LaCTSWIGLULayer(nn.Module):
    def __init__(self, c: LactConfig, layer_idx: int = 0):
        super().__init__()
        self.c = c
        self.layer_idx = layer_idx
        D = c.hidden_size
        self.qkv = nn.Linear(D, 3 * D, bias=c.qkv_bias)
        if c.attn_qk_norm:
            self.q_norm = RMSNorm(D, 1e-5)
            self.k_norm = RMSNorm(D, 1e-5)
        if c.use_fast_weights:
            Hf, df, dh, r = c.num_lact_heads, c.fw_head_dim, c.fw_hidden, c.w0_w2_low_rank
            if c.fw_own_qkv:
                self.fw_qkv = nn.Linear(D, 3 * D, bias=False)
            self.qk_scale = nn.Parameter(torch.ones(D, 2))
            self.qk_offset = nn.Parameter(torch.zeros(D, 2))
            if r > 0:
                self.w0 = LowRankFastWeight(Hf, dh, df, r)
                self.w2 = LowRankFastWeight(Hf, dh, df, r)
            else:
                self.w0 = nn.Parameter(torch.zeros(Hf, dh, df))
                self.w2 = nn.Parameter(torch.zeros(Hf, dh, df))
            self.w1 = nn.Parameter(torch.zeros(Hf, df, dh))
            self.lr_proj = nn.Linear(D, 3 * Hf)
            self.ttt_norm = RMSNorm(df, 1e-5)
            if c.learnable_ttt_scale:
                self.ttt_scale_proj = nn.Linear(D, Hf)
            if c.use_momentum:
                self.momentum_proj = nn.Sequential(nn.Linear(D, Hf), nn.Sigmoid())
        self.o_proj = nn.Linear(D, D, bias=False)
        # diagnostics (not part of the model): freeze the fast weights, record branch magnitudes
        self.fw_update = True
        # training only (the function computed is the same): no gradient from the fast-weight branch
        # into the q/k/v projections it shares with attention
        # What fraction of the fast-weight branch's gradient reaches the q/k/v projections it shares with
        # attention: 1 as the official training, 0 detached (a pilot flag of train.py).
        self.fw_input_grad_scale = 1.0
        self.stats: Optional[Dict[str, float]] = None
        # 'auto' (SDPA when torch has it), 'manual' (masked T x T), 'blocked' (windowed models: per block
        # of W queries only the 2W keys it can see; same function, far less work at T >> W)
        self.attn_impl = 'auto'

    def initial_fast_weights(self):
        w0 = self.w0() if isinstance(self.w0, LowRankFastWeight) else self.w0
        w2 = self.w2() if isinstance(self.w2, LowRankFastWeight) else self.w2
        return w0, self.w1, w2

    def _attention(self, q, k, v, mask):
        # q, k, v: [B, H, T, d]
        W = self.c.window_size
        if self.attn_impl == 'blocked' and W is not None and q.shape[2] > 2 * W:
            return blocked_window_attention(q, k, v, W)
        if self.attn_impl == 'blocked' and W is None and q.shape[2] > 2 * self.c.lact_chunk_size:
            return blocked_causal_attention(q, k, v, self.c.lact_chunk_size)
        use_sdpa = self.attn_impl == 'auto' and hasattr(F, 'scaled_dot_product_attention')
        if use_sdpa:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        scale = 1.0 / math.sqrt(q.shape[-1])
        s = (q @ k.transpose(-1, -2)) * scale
        s = s.masked_fill(~mask, float('-inf'))
        return torch.softmax(s, dim=-1) @ v

    def forward(self, a: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        c = self.c
        B, T, D = a.shape
        Ha, da = c.num_attn_heads, c.attn_head_dim
        q, k, v = self.qkv(a).chunk(3, dim=-1)
        if c.attn_qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)

        # exact local memory: (sliding-window) causal attention
        qa = apply_rope(q.view(B, T, Ha, da), cos, sin).transpose(1, 2)
        ka = apply_rope(k.view(B, T, Ha, da), cos, sin).transpose(1, 2)
        va = v.view(B, T, Ha, da).transpose(1, 2)
        o = self._attention(qa, ka, va, mask).transpose(1, 2).reshape(B, T, D)
        if self.stats is not None:
            self.stats['o_attn'] = o.norm().item()

        if c.use_fast_weights:
            Hf, df = c.num_lact_heads, c.fw_head_dim
            if c.fw_own_qkv:
                qf, kf, vf = self.fw_qkv(a).chunk(3, dim=-1)
            else:
                qf, kf, vf = (scale_grad(t, self.fw_input_grad_scale) for t in (q, k, v))
            fq = qf * self.qk_scale[:, 0] + self.qk_offset[:, 0]
            fk = kf * self.qk_scale[:, 1] + self.qk_offset[:, 1]
            fv = vf
            if c.qkv_silu:
                fq, fk, fv = F.silu(fq), F.silu(fk), F.silu(fv)
            fq = l2_norm(fq.view(B, T, Hf, df)).view(B, T, Ha, da)
            fk = l2_norm(fk.view(B, T, Hf, df)).view(B, T, Ha, da)
            fq = apply_rope(fq, cos, sin)
            fk = apply_rope(fk, cos, sin)

            def heads(x, d):  # [B, T, Hf*d] -> [B*Hf, T, d]
                return x.reshape(B, T, Hf, d).transpose(1, 2).reshape(B * Hf, T, d)

            fq, fk, fv = heads(fq, df), heads(fk, df), heads(fv, df)
            lr_pre = self.lr_proj(a)
            if lr_pre.dtype in (torch.float16, torch.bfloat16):
                lr_pre = lr_pre.float()  # the official code takes the softplus in f32
            lr = F.softplus(lr_pre + BASE_LR_INV)                  # [B, T, 3*Hf]
            lr = heads(lr, 3)
            lr0, lr1, lr2 = lr[..., 0:1], lr[..., 1:2], lr[..., 2:3]
            mom = heads(self.momentum_proj(a), 1) if c.use_momentum else None
            if self.stats is not None:
                self.stats['lr_min'], self.stats['lr_max'] = lr.min().item(), lr.max().item()
                if mom is not None:
                    self.stats['beta_min'], self.stats['beta_max'] = mom.min().item(), mom.max().item()

            w0, w1, w2 = self.initial_fast_weights()

            def rep(w):  # [Hf, x, y] -> [B*Hf, x, y] (batch-major, as the official .repeat)
                return w.unsqueeze(0).expand(B, *w.shape).reshape(B * Hf, *w.shape[1:])

            # the fast-weight state is kept in f32 at least (as the official code keeps it)
            work = torch.float32 if fq.dtype in (torch.float16, torch.bfloat16) else fq.dtype
            y = block_causal_fast_weights(
                rep(w0).to(work), rep(w1).to(work), rep(w2).to(work), fq.to(work), fk.to(work),
                fv.to(work), lr0.to(work), lr1.to(work), lr2.to(work), c.lact_chunk_size, c.use_muon,
                None if mom is None else mom.to(work), update=self.fw_update)
            y = self.ttt_norm(y).to(a.dtype)                       # [B*Hf, T, df]
            y = y.view(B, Hf, T, df)
            if c.learnable_ttt_scale:
                scale = F.silu(self.ttt_scale_proj(a))             # [B, T, Hf]
                y = y * scale.transpose(1, 2).unsqueeze(-1)
            y = y.transpose(1, 2).reshape(B, T, D)
            if self.stats is not None:
                self.stats['y_ttt'] = y.norm().item()
            o = o + y
        return self.o_proj(o)


class GatedMLP(nn.Module):
    def __init__(self, D: int, I: int):
        super().__init__()
        self.gate_proj = nn.Linear(D, I, bias=False)
        self.up_proj = nn.Linear(D, I, bias=False)
        self.down_proj = nn.Linear(I, D, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LaCTBlock(nn.Module):
    def __init__(self, c: LactConfig, layer_idx: int):
        super().__init__()
        self.attn_norm = RMSNorm(c.hidden_size, c.norm_eps)
        self.attn = LaCTSWIGLULayer(c, layer_idx)
        self.mlp_norm = RMSNorm(c.hidden_size, c.norm_eps)
        self.mlp = GatedMLP(c.hidden_size, c.mlp_intermediate_size)

    def forward(self, x, cos, sin, mask):
        h = self.attn(self.attn_norm(x), cos, sin, mask)
        if self.attn.stats is not None:
            self.attn.stats['attn_out'] = h.norm().item()
            self.attn.stats['residual_in'] = x.norm().item()
        x = x + h
        h = self.mlp(self.mlp_norm(x))
        if self.attn.stats is not None:
            self.attn.stats['mlp_out'] = h.norm().item()
        return x + h


class LaCTModel(nn.Module):
    def __init__(self, c: LactConfig):
        super().__init__()
        self.c = c
        self.embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([LaCTBlock(c, i) for i in range(c.num_hidden_layers)])
        self.norm = RMSNorm(c.hidden_size, c.norm_eps)

    def forward(self, input_ids: torch.Tensor, output_hidden_states: bool = False):
        c = self.c
        B, T = input_ids.shape
        x = self.embeddings(input_ids)
        cos, sin = rope_cos_sin(T, c.attn_head_dim, c.rope_theta, device=x.device, dtype=x.dtype)
        mask = window_mask(T, c.window_size, device=x.device)
        hidden: List[torch.Tensor] = []
        for layer in self.layers:
            if output_hidden_states:
                hidden.append(x)
            x = layer(x, cos, sin, mask)
        if output_hidden_states:
            hidden.append(x)  # after the last block, before the final norm
        return self.norm(x), hidden


class LaCTForCausalLM(nn.Module):
    def __init__(self, c: LactConfig):
        super().__init__()
        self.config = c.validate()
        self.model = LaCTModel(c)
        if not c.tie_word_embeddings:
            self.lm_head = nn.Linear(c.hidden_size, c.vocab_size, bias=False)

    def output_weight(self) -> torch.Tensor:
        return self.model.embeddings.weight if self.config.tie_word_embeddings else self.lm_head.weight

    def forward(self, input_ids: torch.Tensor, output_hidden_states: bool = False):
        """input_ids [B, T] (positions 0..T-1) -> logits [B, T, V] (and the hidden states if asked)."""
        h, hidden = self.model(input_ids, output_hidden_states)
        logits = F.linear(h, self.output_weight())
        return (logits, hidden) if output_hidden_states else logits

    # ---- diagnostics ----
    def set_fw_update(self, on: bool) -> None:
        for layer in self.model.layers:
            layer.attn.fw_update = on

    def set_attn_impl(self, impl: str) -> None:
        for layer in self.model.layers:
            layer.attn.attn_impl = impl

    def record_stats(self, on: bool) -> None:
        for layer in self.model.layers:
            layer.attn.stats = {} if on else None

    def layer_stats(self) -> List[Dict[str, float]]:
        return [dict(layer.attn.stats or {}) for layer in self.model.layers]


@torch.no_grad()
def init_official(model: LaCTForCausalLM, generator: Optional[torch.Generator] = None) -> LaCTForCausalLM:
    """The official initialisation (LaCTPreTrainedModel._init_weights + LowRankFastWeight._init_weights)."""
    c = model.config
    std = c.initializer_range
    for mod in model.modules():
        if isinstance(mod, nn.Linear):
            mod.weight.normal_(0.0, std, generator=generator)
            if mod.bias is not None:
                mod.bias.zero_()
        elif isinstance(mod, nn.Embedding):
            mod.weight.normal_(0.0, std, generator=generator)
        elif isinstance(mod, RMSNorm):
            mod.weight.fill_(1.0)
        if isinstance(mod, LaCTSWIGLULayer) and c.use_fast_weights:
            mod.qk_scale.fill_(1.0)
            mod.qk_offset.zero_()
            df, dh = c.fw_head_dim, c.fw_hidden
            if c.w0_w2_low_rank > 0:
                for w in (mod.w0, mod.w2):
                    w.w_left.normal_(0.0, c.fw_init_gain / math.sqrt(w.rank), generator=generator)
                    w.w_right.normal_(0.0, c.fw_init_gain / math.sqrt(df), generator=generator)
            else:
                mod.w0.normal_(0.0, 1.0 / math.sqrt(df), generator=generator)
                mod.w2.normal_(0.0, 1.0 / math.sqrt(df), generator=generator)
            mod.w1.normal_(0.0, 1.0 / math.sqrt(dh), generator=generator)
    return model
