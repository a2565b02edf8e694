"""Streaming (prefill / decode) reference of TTT-E2E: one token at a time, written independently of the
chunked path in inner.py (its own per-query attention; it shares only the parameter tensors and the
elementwise helpers rms_norm / apply_rope / swiglu). This is what the TypeScript engine's decode is
checked against.

State (the "compressed memory" of a document): the position p, the K/V of every block (roped keys; only
the last W are ever read, plus, for the TTT blocks, the W-1 before the pending chunk while it waits), the
dynamic weights theta, and the pending chunk: the TTT-block inputs h_pre of the positions since the
last update (at most B rows) and their tokens.

Update rule ("apply, then update"; the spec's Prefill and decode): when the token at position (i+1)B is
fed (it is chunk i's last target), BEFORE that token is processed, chunk i takes its update:
its TTT-block forward is recomputed from the kept h_pre rows with the same theta_{i-1} that produced its
logits (the K/V of earlier positions being constants), loss_i = mean CE over its targets
t_{iB+1..iB+B} skipping BOS, one global-norm clip over all S blocks' W1, W2, W3, SGD. The token at
(i+1)B and everything after it run with theta_i. So after feeding P tokens, floor((P-1)/B) updates have
been taken. The K/V cached while decoding chunk i (computed with theta_{i-1}) are kept, not recomputed.
"""
from __future__ import annotations

import math
from typing import List, Optional

import torch
import torch.nn.functional as F

from .inner import chunk_loss, clip_by_global_norm, ttt_forward
from .model import E2EForCausalLM, apply_rope, rms_norm, rope_angles, swiglu


class E2EStream:
    def __init__(self, model: E2EForCausalLM, inner_lr: Optional[float] = None, clip: Optional[float] = None):
        self.m = model
        c = self.c = model.config
        self.lr = c.inner_lr if inner_lr is None else inner_lr
        self.max_norm = c.inner_clip_global_norm if clip is None else clip
        self.pos = 0
        self.tokens: List[int] = []
        self.k: List[List[torch.Tensor]] = [[] for _ in range(c.num_layers)]  # per block: [H, hd] per position
        self.v: List[List[torch.Tensor]] = [[] for _ in range(c.num_layers)]
        self.theta = [[w.detach().clone() for w in b.dyn_mlp.weights()] for b in model.ttt_blocks]
        self.pending_h: List[torch.Tensor] = []  # h_pre rows of the positions since the last update
        self.grad_norms: List[float] = []
        self.clip_scales: List[float] = []
        self.chunk_losses: List[float] = []
        self.thetas: List[List[List[torch.Tensor]]] = []

    # ---- the per-token forward ----
    def _qkv(self, layer, a: torch.Tensor, pos: torch.Tensor):
        """a [n, d] at positions pos [n] -> q, k, v [n, H, hd] (q, k normed per head, then roped)."""
        c, at = self.c, layer.attn
        n = a.shape[0]
        q = (a @ at.q_proj.weight.T).view(n, c.num_heads, c.head_dim)
        k = (a @ at.k_proj.weight.T).view(n, c.num_heads, c.head_dim)
        v = (a @ at.v_proj.weight.T).view(n, c.num_heads, c.head_dim)
        q = rms_norm(q, at.q_norm.weight, c.rms_norm_eps)
        k = rms_norm(k, at.k_norm.weight, c.rms_norm_eps)
        ang = rope_angles(pos, c.head_dim, c.rope_theta)[:, None, :]  # [n, 1, hd/2], per head alike
        return apply_rope(q, ang), apply_rope(k, ang), v

    def _attend_one(self, q: torch.Tensor, ks: List[torch.Tensor], vs: List[torch.Tensor]) -> torch.Tensor:
        """q [H, hd] against keys ks (each [H, hd], already the visible ones) -> [H*hd]."""
        K, V = torch.stack(ks, 1), torch.stack(vs, 1)  # [H, n, hd]
        s = torch.einsum('hd,hnd->hn', q, K) / math.sqrt(self.c.head_dim)
        return torch.einsum('hn,hnd->hd', torch.softmax(s, -1), V).reshape(-1)

    def _tail(self, layer, h, o, theta):
        """Everything of a block after the attention mix o [n, d]."""
        eps = self.c.rms_norm_eps
        h = h + rms_norm(o @ layer.attn.o_proj.weight.T, layer.attn_post_norm.weight, eps)
        if layer.ttt:
            h = h + rms_norm(swiglu(rms_norm(h, layer.dyn_norm.weight, eps), *theta), layer.dyn_post_norm.weight, eps)
        mlp = layer.mlp
        h = h + rms_norm(swiglu(rms_norm(h, layer.mlp_norm.weight, eps), mlp.w1.weight, mlp.w2.weight, mlp.w3.weight),
                         layer.mlp_post_norm.weight, eps)
        return h

    def _head(self, h):
        return rms_norm(h, self.m.model.norm.weight, self.c.rms_norm_eps) @ self.m.model.embed.weight.T

    @torch.no_grad()
    def _decode(self, token: int) -> torch.Tensor:
        c, p = self.c, self.pos
        lo = max(0, p - c.sliding_window + 1)
        h = self.m.model.embed.weight[token][None, :]
        for i, layer in enumerate(self.m.model.layers):
            if i == c.first_ttt_layer:
                self.pending_h.append(h[0].clone())
            q, k, v = self._qkv(layer, rms_norm(h, layer.attn_norm.weight, c.rms_norm_eps), torch.tensor([p]))
            self.k[i].append(k[0])
            self.v[i].append(v[0])
            o = self._attend_one(q[0], self.k[i][lo:p + 1], self.v[i][lo:p + 1])[None, :]
            th = self.theta[i - c.first_ttt_layer] if layer.ttt else None
            h = self._tail(layer, h, o, th)
        return self._head(h)[0]

    # ---- the update of a complete chunk ----
    def _update(self, i: int) -> None:
        c, B, W = self.c, self.c.mini_batch_size, self.c.sliding_window
        s = i * B
        assert len(self.pending_h) == B, (len(self.pending_h), B)
        targets = torch.tensor(self.tokens[s + 1:s + B + 1])
        theta = [[w.clone().requires_grad_(True) for w in t] for t in self.theta]
        with torch.enable_grad():
            h = torch.stack(self.pending_h, 0)  # [B, d], constants (from the non-TTT blocks)
            for j, li in enumerate(c.ttt_layers):
                layer = self.m.model.layers[li]
                q, k, v = self._qkv(layer, rms_norm(h, layer.attn_norm.weight, c.rms_norm_eps), torch.arange(s, s + B))
                rows = []
                for t in range(B):
                    p = s + t
                    lo = max(0, p - W + 1)
                    ks = [kk.detach() for kk in self.k[li][lo:s]] + [k[u] for u in range(max(lo, s) - s, t + 1)]
                    vs = [vv.detach() for vv in self.v[li][lo:s]] + [v[u] for u in range(max(lo, s) - s, t + 1)]
                    rows.append(self._attend_one(q[t], ks, vs))
                h = self._tail(layer, h, torch.stack(rows, 0), theta[j])
            loss, _, _ = chunk_loss(self._head(h), targets, c.bos_token_id)
            flat = [w for t in theta for w in t]
            grads = torch.autograd.grad(loss, flat)
        grads, norm, scale = clip_by_global_norm(grads, self.max_norm)
        new = [(w - self.lr * g).detach() for w, g in zip(flat, grads)]
        self.theta = [new[k:k + 3] for k in range(0, len(new), 3)]
        self.grad_norms.append(norm)
        self.clip_scales.append(scale)
        self.chunk_losses.append(float(loss.detach()))
        self.thetas.append([[w.clone() for w in t] for t in self.theta])
        self.pending_h = []

    def feed(self, token: int) -> torch.Tensor:
        """Feed the token at position self.pos; returns its logits [V] (the next-token distribution)."""
        B, p = self.c.mini_batch_size, self.pos
        self.tokens.append(int(token))
        if p > 0 and p % B == 0 and self.c.num_ttt_layers > 0:
            self._update(p // B - 1)  # token p is chunk p/B - 1's last target: it learns now
        elif p > 0 and p % B == 0:
            self.pending_h = []
        out = self._decode(int(token))
        self.pos += 1
        return out

    @property
    def n_updates(self) -> int:
        return len(self.grad_norms)

    # ---- a chunked prefill, then streaming ----
    @classmethod
    def from_prefill(cls, model: E2EForCausalLM, tokens: List[int], inner_lr: Optional[float] = None,
                     clip: Optional[float] = None):
        """The state after a chunked prefill of `tokens` (inner.ttt_forward: floor((P-1)/B) updates), ready
        to decode. Returns (stream, logits [P, V])."""
        st = cls(model, inner_lr, clip)
        c, B = st.c, st.c.mini_batch_size
        P = len(tokens)
        r = ttt_forward(model, torch.tensor(tokens), inner_lr=st.lr, clip=st.max_norm)
        st.tokens = list(int(t) for t in tokens)
        st.pos = P
        for i, kv in enumerate(r.prefix_kv):
            st.k[i] = list(kv.k.transpose(0, 1))
            st.v[i] = list(kv.v.transpose(0, 1))
        for j, li in enumerate(c.ttt_layers):
            K = torch.cat([kv.k for kv in r.kv[j]], 1)
            V = torch.cat([kv.v for kv in r.kv[j]], 1)
            st.k[li] = list(K.transpose(0, 1))
            st.v[li] = list(V.transpose(0, 1))
        st.theta = [[w.detach().clone() for w in t] for t in r.theta]
        st.grad_norms = list(r.grad_norms)
        st.clip_scales = list(r.clip_scales)
        st.chunk_losses = [float(x) for x in r.chunk_losses]
        n_upd = r.n_updates
        assert n_upd == (P - 1) // B if c.num_ttt_layers else n_upd == 0
        start = n_upd * B if c.num_ttt_layers else (P // B) * B
        if c.num_ttt_layers and start == P:  # cannot happen: the chunk after the last update has >= 1 token
            raise AssertionError
        st.pending_h = [row.clone() for row in r.h_pre[start:P]] if c.num_ttt_layers else []
        return st, r.logits
