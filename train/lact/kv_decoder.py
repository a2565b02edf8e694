"""Incremental (KV-cache) decoders of a full-attention LaCTForCausalLM, for ONNX export (train/export_onnx.py).

Both are one step of a decoder over the twin's own modules and weights: tokens at positions P .. P+T-1
attend to the cached keys/values of positions 0 .. P-1 and to each other (causally), and the step returns
the logits and the cache grown by T (present = past + these tokens). Run as a prefill (P = 0) and then one
token at a time, they reproduce LaCTForCausalLM.forward on the whole sequence (export_onnx.py checks it).

- `PlainKvDecoder`: standard ONNX ops only (opset 17): what a straightforward export gives.
  Inputs (input_ids, position_ids, past...).
- `FusedKvDecoder`: onnxruntime's contrib ops where a model prepared for onnxruntime-web has them:
  `SimplifiedLayerNormalization` for every RMSNorm and `com.microsoft.GroupQueryAttention` (rotary inside,
  the cache concatenation inside, flash attention on WebGPU) for attention. Inputs (input_ids, past...):
  GroupQueryAttention takes the positions from the cache length, so position_ids is not an input.

Keys in the cache are stored after RoPE, [1, H, P, d] per layer, as the engine stores them.
"""
from __future__ import annotations

import math
from typing import List

import torch
import torch.nn as nn

from .model import LaCTForCausalLM, apply_rope


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """The twin's RMSNorm (x / sqrt(mean(x^2) + eps) * weight), in the form onnxruntime's
    SimplifiedLayerNormFusion matches (Pow, ReduceMean, Add, Sqrt, Div, Mul); the same function as
    RMSNorm.forward up to the rounding of x / s against x * (1 / s)."""
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def inv_freq(c, dtype: torch.dtype) -> torch.Tensor:
    """theta^(-2i/da) in float64, as rope_cos_sin computes it, then `dtype`. The exported graphs take the
    angles in float32 (WebGPU has no f64), as the engine's rope kernel does; the float64 check keeps
    float64 so that it tests the cache logic alone."""
    da = c.attn_head_dim
    inv = 1.0 / (float(c.rope_theta) ** (torch.arange(0, da, 2, dtype=torch.float64) / da))
    return inv.to(dtype)


def causal_attention(q, k, v, past_len, scale: float) -> torch.Tensor:
    """q [1, H, T, d] at positions past_len + i; k, v [1, H, P+T, d] at positions 0..P+T-1."""
    T, S = q.shape[2], k.shape[2]
    allowed = torch.arange(S)[None, :] <= (past_len + torch.arange(T))[:, None]
    s = (q @ k.transpose(-1, -2)) * scale
    s = s.masked_fill(~allowed, float('-inf'))
    return torch.softmax(s, dim=-1) @ v


class _Base(nn.Module):
    def __init__(self, model: LaCTForCausalLM, angle_dtype: torch.dtype):
        super().__init__()
        c = model.config
        if c.use_fast_weights or c.window_size is not None:
            raise ValueError('only full-attention models (use_fast_weights: false, window_size: null) have a '
                             'KV-cache decoder here')
        self.model = model
        self.c = c
        self.register_buffer('inv_freq', inv_freq(c, angle_dtype), persistent=False)


class PlainKvDecoder(_Base):
    """Standard ONNX ops: the mask, RoPE and the cache concatenation written out."""

    uses_position_ids = True

    def __init__(self, model: LaCTForCausalLM, angle_dtype: torch.dtype = torch.float32):
        super().__init__(model, angle_dtype)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, *past: torch.Tensor):
        c = self.c
        m = self.model
        H, d, D = c.num_attn_heads, c.attn_head_dim, c.hidden_size
        dt = m.model.embeddings.weight.dtype
        x = m.model.embeddings(input_ids)                                   # [1, T, D]
        T = input_ids.shape[1]
        pos = position_ids[0]                                               # [T]
        ang = pos.to(self.inv_freq.dtype)[:, None] * self.inv_freq[None, :]  # [T, d/2]
        ang = torch.cat([ang, ang], dim=-1)
        cos, sin = ang.cos().to(dt), ang.sin().to(dt)
        # query at absolute position p sees keys 0..p (the cache holds positions 0..P+T-1); one mask for
        # every layer
        kpos = torch.arange(past[0].shape[2] + T, device=x.device)
        allowed = kpos[None, :] <= pos[:, None]                              # [T, P+T]
        presents: List[torch.Tensor] = []
        for i, block in enumerate(m.model.layers):
            attn = block.attn
            a = rms_norm(x, block.attn_norm.weight, block.attn_norm.eps)
            q, k, v = attn.qkv(a).chunk(3, dim=-1)
            if c.attn_qk_norm:
                q = rms_norm(q, attn.q_norm.weight, attn.q_norm.eps)
                k = rms_norm(k, attn.k_norm.weight, attn.k_norm.eps)
            q = apply_rope(q.view(1, T, H, d), cos, sin).transpose(1, 2)      # [1, H, T, d]
            k = apply_rope(k.view(1, T, H, d), cos, sin).transpose(1, 2)
            v = v.view(1, T, H, d).transpose(1, 2)
            k = torch.cat([past[2 * i], k], dim=2)                            # [1, H, P+T, d]
            v = torch.cat([past[2 * i + 1], v], dim=2)
            presents += [k, v]
            s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(d))
            s = s.masked_fill(~allowed, float('-inf'))
            o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(1, T, D)
            x = x + attn.o_proj(o)
            x = x + block.mlp(rms_norm(x, block.mlp_norm.weight, block.mlp_norm.eps))
        logits = torch.nn.functional.linear(rms_norm(x, m.model.norm.weight, m.model.norm.eps), m.output_weight())
        return (logits, *presents)


class SimplifiedLayerNorm(torch.autograd.Function):
    """RMSNorm; exported as onnxruntime's SimplifiedLayerNormalization (ONNX domain, ORT-defined)."""

    @staticmethod
    def forward(ctx, x, weight, eps: float):  # noqa: D102 (torch API)
        return rms_norm(x, weight, eps)

    @staticmethod
    def symbolic(g, x, weight, eps: float):  # noqa: D102
        return g.op('SimplifiedLayerNormalization', x, weight, axis_i=-1, epsilon_f=eps, stash_type_i=1)


class GroupQueryAttention(torch.autograd.Function):
    """com.microsoft.GroupQueryAttention with do_rotary (rotate-half), kv_num_heads = num_heads.

    q, k, v [1, T, D] before RoPE; past_k/v [1, H, P, d] after RoPE; seqlens_k int32 [1] = P+T-1;
    total_len int32 scalar = P+T; cos/sin caches [P+T, d/2] indexed by position. Returns the attention
    output [1, T, D] and the presents [1, H, P+T, d]. The forward is the reference the export check runs;
    onnxruntime runs its own kernel (the TypeScript test compares that with the engine)."""

    @staticmethod
    def forward(ctx, q, k, v, past_k, past_v, seqlens_k, total_len, cos_cache, sin_cache, num_heads: int):  # noqa: D102
        T, D = q.shape[1], q.shape[2]
        H, d = num_heads, D // num_heads
        P = past_k.shape[2]
        pos = torch.arange(P, P + T)
        cos = torch.cat([cos_cache[pos], cos_cache[pos]], dim=-1)
        sin = torch.cat([sin_cache[pos], sin_cache[pos]], dim=-1)
        q = apply_rope(q.view(1, T, H, d), cos, sin).transpose(1, 2)
        k = apply_rope(k.view(1, T, H, d), cos, sin).transpose(1, 2)
        v = v.view(1, T, H, d).transpose(1, 2)
        k = torch.cat([past_k, k], dim=2)
        v = torch.cat([past_v, v], dim=2)
        o = causal_attention(q, k, v, P, 1.0 / math.sqrt(d)).transpose(1, 2).reshape(1, T, D)
        return o, k, v

    @staticmethod
    def symbolic(g, q, k, v, past_k, past_v, seqlens_k, total_len, cos_cache, sin_cache, num_heads: int):  # noqa: D102
        return g.op('com.microsoft::GroupQueryAttention', q, k, v, past_k, past_v, seqlens_k, total_len,
                    cos_cache, sin_cache, num_heads_i=num_heads, kv_num_heads_i=num_heads, do_rotary_i=1,
                    rotary_interleaved_i=0, outputs=3)


def gqa_blocks(m: LaCTForCausalLM, x, past, gqa, seqlens_k, total_len, cos_cache, sin_cache):
    """The blocks of the fused and shared decoders: RMSNorms as SimplifiedLayerNormalization, attention as
    `gqa` (a GroupQueryAttention export). Returns the residual stream and the presents."""
    c = m.config
    norm = SimplifiedLayerNorm.apply
    presents: List[torch.Tensor] = []
    for i, block in enumerate(m.model.layers):
        attn = block.attn
        a = norm(x, block.attn_norm.weight, block.attn_norm.eps)
        q, k, v = attn.qkv(a).chunk(3, dim=-1)
        if c.attn_qk_norm:
            q = norm(q, attn.q_norm.weight, attn.q_norm.eps)
            k = norm(k, attn.k_norm.weight, attn.k_norm.eps)
        o, pk, pv = gqa(q, k, v, past[2 * i], past[2 * i + 1], seqlens_k, total_len, cos_cache, sin_cache,
                        c.num_attn_heads)
        presents += [pk, pv]
        x = x + attn.o_proj(o)
        x = x + block.mlp(norm(x, block.mlp_norm.weight, block.mlp_norm.eps))
    return x, presents


class FusedKvDecoder(_Base):
    """onnxruntime contrib ops: SimplifiedLayerNormalization and GroupQueryAttention (see module doc)."""

    uses_position_ids = False

    def __init__(self, model: LaCTForCausalLM, angle_dtype: torch.dtype = torch.float32):
        super().__init__(model, angle_dtype)

    def forward(self, input_ids: torch.Tensor, *past: torch.Tensor):
        m = self.model
        dt = m.model.embeddings.weight.dtype
        norm = SimplifiedLayerNorm.apply
        x = m.model.embeddings(input_ids)                                   # [1, T, D]
        # Sizes as tensors (Shape ops in the graph, so T and P stay dynamic); GroupQueryAttention wants
        # them as int32 on the CPU, where onnxruntime keeps shape arithmetic anyway.
        total = torch._shape_as_tensor(past[0])[2] + torch._shape_as_tensor(input_ids)[1]
        total_len = total.to(torch.int32)
        seqlens_k = (total - 1).to(torch.int32).reshape(1)
        # cos/sin of every position up to P+T: computed per step (a few dispatches) rather than stored
        # for a maximum context, which would put megabytes of constants into the graph.
        ang = torch.arange(total).to(self.inv_freq.dtype)[:, None] * self.inv_freq[None, :]
        cos_cache, sin_cache = ang.cos().to(dt), ang.sin().to(dt)
        x, presents = gqa_blocks(m, x, past, GroupQueryAttention.apply, seqlens_k, total_len, cos_cache, sin_cache)
        logits = torch.nn.functional.linear(norm(x, m.model.norm.weight, m.model.norm.eps), m.output_weight())
        return (logits, *presents)


class SharedBufferGroupQueryAttention(torch.autograd.Function):
    """GroupQueryAttention as onnxruntime runs it when the present K/V are the past's own buffers
    (`past_present_share_buffer`): past_k/v [1, H, C, d] hold C >= P+T rows of which the first P are valid
    (P = total_len - T, as the runtime derives it from seqlens_k); the step writes rows P..P+T-1 in place and
    the present is that same buffer. With a past of exactly P rows (C = P, nothing shared) the present is
    the concatenation, as in the fused variant. Same exported op and attributes as GroupQueryAttention."""

    @staticmethod
    def forward(ctx, q, k, v, past_k, past_v, seqlens_k, total_len, cos_cache, sin_cache, num_heads: int):  # noqa: D102
        T, D = q.shape[1], q.shape[2]
        H, d = num_heads, D // num_heads
        total = int(total_len)
        P = total - T
        pos = torch.arange(P, total)
        cos = torch.cat([cos_cache[pos], cos_cache[pos]], dim=-1)
        sin = torch.cat([sin_cache[pos], sin_cache[pos]], dim=-1)
        q = apply_rope(q.view(1, T, H, d), cos, sin).transpose(1, 2)
        k = apply_rope(k.view(1, T, H, d), cos, sin).transpose(1, 2)
        v = v.view(1, T, H, d).transpose(1, 2)
        keys = torch.cat([past_k[:, :, :P], k], dim=2)
        values = torch.cat([past_v[:, :, :P], v], dim=2)
        o = causal_attention(q, keys, values, P, 1.0 / math.sqrt(d)).transpose(1, 2).reshape(1, T, D)
        if past_k.shape[2] >= total:
            pk, pv = past_k.clone(), past_v.clone()
            pk[:, :, P:total] = k
            pv[:, :, P:total] = v
            return o, pk, pv
        return o, keys, values

    @staticmethod
    def symbolic(g, q, k, v, past_k, past_v, seqlens_k, total_len, cos_cache, sin_cache, num_heads: int):  # noqa: D102
        return GroupQueryAttention.symbolic(g, q, k, v, past_k, past_v, seqlens_k, total_len, cos_cache,
                                            sin_cache, num_heads)


class CosSinCache(torch.autograd.Function):
    """cos and sin of position * inv_freq for positions 0..n-1, [n, d/2]. Exported as ops over constants
    (Range, Unsqueeze, Mul, Cos, Sin) rather than as the tracer's folded tables, so the .onnx stays small
    and onnxruntime folds them into initializers once, when it loads the graph."""

    @staticmethod
    def forward(ctx, inv_freq, n: int):  # noqa: D102
        ang = torch.arange(n).to(inv_freq.dtype)[:, None] * inv_freq[None, :]
        return ang.cos(), ang.sin()

    @staticmethod
    def symbolic(g, inv_freq, n: int):  # noqa: D102
        f32 = lambda x: g.op('Constant', value_t=torch.tensor(x, dtype=torch.float32))  # noqa: E731
        pos = g.op('Range', f32(0.0), f32(float(n)), f32(1.0))
        ang = g.op('Mul', g.op('Unsqueeze', pos, g.op('Constant', value_t=torch.tensor([1]))), inv_freq)
        return g.op('Cos', ang), g.op('Sin', ang)


class SharedKvDecoder(_Base):
    """The graph as the best-prepared decoders for onnxruntime-web are (onnxruntime-genai's builder, the
    onnx-community exports transformers.js loads): their input and output names (input_ids,
    attention_mask, past_key_values.i.key/value -> logits, present.i.key/value), GroupQueryAttention with
    rotary, seqlens_k and the total length taken from attention_mask, cos/sin caches of `max_positions`
    rows computed from constants (onnxruntime folds them into initializers when it loads the graph), and
    logits of the last row only. Run with a past of fixed capacity that is bound as the present too, the
    cache is updated in place (`past_present_share_buffer`); run with a past of exactly P rows (what
    transformers.js does), the present is P+T rows."""

    uses_position_ids = False
    uses_attention_mask = True

    def __init__(self, model: LaCTForCausalLM, angle_dtype: torch.dtype = torch.float32, max_positions: int = 65536):
        super().__init__(model, angle_dtype)
        self.max_positions = max_positions

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *past: torch.Tensor):
        m = self.model
        dt = m.model.embeddings.weight.dtype
        norm = SimplifiedLayerNorm.apply
        x = m.model.embeddings(input_ids)                                   # [1, T, D]
        total_len = torch._shape_as_tensor(attention_mask)[1].to(torch.int32)
        seqlens_k = (attention_mask.sum(dim=1) - 1).to(torch.int32)         # [1]
        cos_cache, sin_cache = CosSinCache.apply(self.inv_freq, self.max_positions)
        cos_cache, sin_cache = cos_cache.to(dt), sin_cache.to(dt)
        x, presents = gqa_blocks(m, x, past, SharedBufferGroupQueryAttention.apply, seqlens_k, total_len,
                                 cos_cache, sin_cache)
        last = x[:, -1:, :]
        logits = torch.nn.functional.linear(norm(last, m.model.norm.weight, m.model.norm.eps), m.output_weight())
        return (logits, *presents)


DECODERS = {'plain': PlainKvDecoder, 'fused': FusedKvDecoder, 'shared': SharedKvDecoder}
