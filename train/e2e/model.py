"""The TTT-E2E Transformer (shared/spec/ttt-e2e-language-model.md), forward only.

One sequence at a time (no batch axis, as the official code): tokens [T] -> logits [T, V].

Block (every block; the last S are TTT blocks and hold the dynamic MLP):
    h = h + attn_post_norm(attn(attn_norm(h)))
    h = h + dyn_post_norm(swiglu_dyn(dyn_norm(h)))      # TTT blocks only, with the current theta
    h = h + mlp_post_norm(swiglu(mlp_norm(h)))
    logits = norm(h) @ embed^T                          # tied head, no sqrt(d) scaling anywhere
Attention: q, k, v = a Wq^T, a Wk^T, a Wv^T; per-head RMSNorm of q and k over hd with ONE gain [hd] per
layer (shared by the heads); interleaved RoPE (pairs (2i, 2i+1), freq_i = theta^(-2i/hd)) at absolute
positions, after the norm; softmax(q.k / sqrt(hd)) over keys p-W < j <= p; o Wo^T.
SwiGLU(x; w1, w2, w3) = (silu(x w1^T) * (x w3^T)) w2^T, weights stored [out, in].

The dtype follows the parameters (`model.double()` for the float64 reference). RMSNorms and RoPE run in
at least float32 (angles in float64).

The inner loop (test-time training) is in inner.py; `E2EForCausalLM.forward` here is the plain
sliding-window forward with the checkpoint's dynamic weights (= inner rate 0).
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import E2EConfig

Theta = Tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (w1 [fd, d], w2 [d, fd], w3 [fd, d]) of one TTT block


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    dt = x.dtype
    xf = x.float() if dt in (torch.float16, torch.bfloat16) else x
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.to(y.dtype)).to(dt)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rope_angles(pos: torch.Tensor, head_dim: int, theta: float) -> torch.Tensor:
    """[T, hd/2] angles pos * theta^(-2i/hd), in float64."""
    i = torch.arange(head_dim // 2, dtype=torch.float64)
    freq = theta ** (-2.0 * i / head_dim)
    return pos.to(torch.float64)[:, None] * freq[None, :]


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Interleaved (Meta-Llama) RoPE: x [..., T, hd], pairs (2i, 2i+1) rotated as complex numbers."""
    dt = x.dtype
    wd = torch.float64 if dt == torch.float64 else torch.float32
    cos, sin = angles.cos().to(wd), angles.sin().to(wd)
    xe, xo = x[..., 0::2].to(wd), x[..., 1::2].to(wd)
    ye = xe * cos - xo * sin
    yo = xe * sin + xo * cos
    return torch.stack((ye, yo), dim=-1).flatten(-2).to(dt)


def window_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int) -> torch.Tensor:
    """[Tq, Tk] True where key j is visible from query p: p - W < j <= p."""
    qp, kp = q_pos[:, None], k_pos[None, :]
    return (kp <= qp) & (kp > qp - window)


def swiglu(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, w3: torch.Tensor) -> torch.Tensor:
    return F.linear(F.silu(F.linear(x, w1)) * F.linear(x, w3), w2)


class SwiGLU(nn.Module):
    def __init__(self, d: int, f: int):
        super().__init__()
        self.w1 = nn.Linear(d, f, bias=False)
        self.w2 = nn.Linear(f, d, bias=False)
        self.w3 = nn.Linear(d, f, bias=False)

    def weights(self) -> Theta:
        return (self.w1.weight, self.w2.weight, self.w3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return swiglu(x, *self.weights())


class Attention(nn.Module):
    def __init__(self, c: E2EConfig):
        super().__init__()
        d = c.hidden_size
        self.H, self.hd, self.W, self.theta = c.num_heads, c.head_dim, c.sliding_window, c.rope_theta
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.q_norm = RMSNorm(self.hd, c.rms_norm_eps)
        self.k_norm = RMSNorm(self.hd, c.rms_norm_eps)

    def project(self, a: torch.Tensor, pos: torch.Tensor):
        """a [T, d] at positions pos [T] -> q, k, v [H, T, hd]; q and k normed per head, then roped."""
        T = a.shape[0]

        def heads(x):
            return x.view(T, self.H, self.hd).transpose(0, 1)

        q, k, v = heads(self.q_proj(a)), heads(self.k_proj(a)), heads(self.v_proj(a))
        ang = rope_angles(pos, self.hd, self.theta)
        q = apply_rope(self.q_norm(q), ang)
        k = apply_rope(self.k_norm(k), ang)
        return q, k, v

    def attend(self, q, k, v, q_pos, k_pos) -> torch.Tensor:
        """q [H, Tq, hd], k, v [H, Tk, hd] -> o_proj(softmax attention) [Tq, d]."""
        s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
        s = s.masked_fill(~window_mask(q_pos, k_pos, self.W), float('-inf'))
        o = torch.softmax(s, dim=-1) @ v
        return self.o_proj(o.transpose(0, 1).reshape(q.shape[1], self.H * self.hd))


class KV:
    """Keys (roped) and values [H, n, hd] of a run of consecutive positions k_pos [n]."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor):
        self.k, self.v, self.pos = k, v, pos

    @staticmethod
    def cat(parts: Sequence['KV']) -> 'KV':
        return KV(torch.cat([p.k for p in parts], 1), torch.cat([p.v for p in parts], 1),
                  torch.cat([p.pos for p in parts], 0))

    def last(self, n: int) -> 'KV':
        return KV(self.k[:, -n:], self.v[:, -n:], self.pos[-n:]) if n > 0 else KV(self.k[:, :0], self.v[:, :0], self.pos[:0])

    def detach(self) -> 'KV':
        return KV(self.k.detach(), self.v.detach(), self.pos)


class Block(nn.Module):
    def __init__(self, c: E2EConfig, ttt: bool):
        super().__init__()
        d, eps = c.hidden_size, c.rms_norm_eps
        self.ttt = ttt
        self.attn_norm = RMSNorm(d, eps)
        self.attn = Attention(c)
        self.attn_post_norm = RMSNorm(d, eps)
        if ttt:
            self.dyn_norm = RMSNorm(d, eps)
            self.dyn_mlp = SwiGLU(d, c.intermediate_size_dynamic_mlp)
            self.dyn_post_norm = RMSNorm(d, eps)
        self.mlp_norm = RMSNorm(d, eps)
        self.mlp = SwiGLU(d, c.intermediate_size_static_mlp)
        self.mlp_post_norm = RMSNorm(d, eps)

    def forward(self, h: torch.Tensor, pos: torch.Tensor, past: Optional[KV] = None,
                theta: Optional[Theta] = None) -> Tuple[torch.Tensor, KV]:
        """h [T, d] at consecutive positions pos; `past`: K/V of earlier positions (constants to this
        call, may be longer than the window); `theta`: the dynamic weights to use (TTT blocks; default:
        the block's own parameters). Returns the new h and this call's K/V."""
        q, k, v = self.attn.project(self.attn_norm(h), pos)
        cur = KV(k, v, pos)
        kv = KV.cat([past, cur]) if past is not None and past.pos.numel() else cur
        h = h + self.attn_post_norm(self.attn.attend(q, kv.k, kv.v, pos, kv.pos))
        if self.ttt:
            w = theta if theta is not None else self.dyn_mlp.weights()
            h = h + self.dyn_post_norm(swiglu(self.dyn_norm(h), *w))
        h = h + self.mlp_post_norm(self.mlp(self.mlp_norm(h)))
        return h, cur


class E2EModel(nn.Module):
    def __init__(self, c: E2EConfig):
        super().__init__()
        self.embed = nn.Embedding(c.vocab_size, c.hidden_size)
        self.layers = nn.ModuleList([Block(c, c.is_ttt_layer(i)) for i in range(c.num_layers)])
        self.norm = RMSNorm(c.hidden_size, c.rms_norm_eps)


class E2EForCausalLM(nn.Module):
    """State dict names are exactly config.expected_tensors() (`model.` prefix, no lm_head: tied)."""

    def __init__(self, config: E2EConfig):
        super().__init__()
        self.config = config.validate()
        self.model = E2EModel(config)

    # ---- pieces used by the inner loop and the streaming reference ----
    @property
    def ttt_blocks(self) -> List[Block]:
        return [self.model.layers[i] for i in self.config.ttt_layers]

    def initial_theta(self) -> List[Theta]:
        """The checkpoint's dynamic weights (the parameters themselves), one triple per TTT block."""
        return [b.dyn_mlp.weights() for b in self.ttt_blocks]

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(self.model.norm(h), self.model.embed.weight)

    def prefix(self, tokens: torch.Tensor, pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Embedding + the L-S non-TTT blocks over the whole sequence (they never see theta)."""
        if pos is None:
            pos = torch.arange(tokens.shape[0])
        h = self.model.embed(tokens)
        for i in range(self.config.first_ttt_layer):
            h, _ = self.model.layers[i](h, pos)
        return h

    def forward(self, tokens: torch.Tensor, output_hidden_states: bool = False):
        """Plain sliding-window forward with the checkpoint's dynamic weights (no test-time updates)."""
        pos = torch.arange(tokens.shape[0])
        h = self.model.embed(tokens)
        hidden = [h]
        for layer in self.model.layers:
            h, _ = layer(h, pos)
            hidden.append(h)
        logits = self.head(h)
        return (logits, hidden) if output_hidden_states else logits


@torch.no_grad()
def init_official(model: E2EForCausalLM, std: float = 0.02, seed: Optional[int] = None) -> E2EForCausalLM:
    """The official initialisation: every matrix N(0, std^2) (embedding included), every norm gain 1."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    for name, p in model.named_parameters():
        if name.endswith('norm.weight'):
            p.fill_(1.0)
        else:
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * std)
    return model
