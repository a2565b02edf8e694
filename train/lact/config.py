"""config.json <-> LactConfig.

Keys and defaults are those of the official `LaCTSWIGLUConfig` (a1600012888/LaCT,
lact_llm/lact_model/configuration_lact_swiglu.py), interpreted exactly as src/model/config.ts does,
plus the ttt-web extensions:
  - window_size: null       -> full causal attention;
  - use_fast_weights: false -> no fast-weight branch (sliding-window or full-attention baseline);
  - tokenizer: "byte"       -> byte-level tokenizer (ids 0..255 are bytes), else "tokenizer.json".
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional


def default_intermediate_size(hidden_size: int, hidden_ratio: float) -> int:
    """The official GatedMLP rule: 256 * ceil(int(D * hidden_ratio * 2/3) / 256)."""
    raw = int(hidden_size * hidden_ratio * 2 / 3)
    return 256 * ((raw + 255) // 256)


# Keys of the official config that are accepted only with one value (the one the layer implements).
_FIXED = {
    'lr_dim': (1,),
    'lr_parameterization': ('mamba',),
    'ttt_loss_type': ('dot_product',),
    'ttt_prenorm': (False,),
    'hidden_act': ('swish', 'silu'),
    # keys of newer official versions; only their default is implemented here (and in the TS engine)
    'no_v_silu': (False,),
    'ttt_nope': (False,),
}


@dataclass
class LactConfig:
    vocab_size: int = 32000
    hidden_size: int = 2048
    num_hidden_layers: int = 24
    num_attn_heads: int = 32
    num_lact_heads: int = 4
    inter_multi: float = 1
    qkv_bias: bool = False
    attn_qk_norm: bool = False
    lact_chunk_size: int = 2048
    use_muon: bool = False
    lr_dim: int = 1
    qkv_silu: bool = True
    lr_parameterization: str = 'mamba'
    learnable_ttt_scale: bool = True
    use_momentum: bool = True
    ttt_loss_type: str = 'dot_product'
    ttt_prenorm: bool = False
    w0_w2_low_rank: int = -1
    window_size: Optional[int] = 2048
    rope_theta: float = 10000.0
    max_position_embeddings: int = 2048
    hidden_ratio: float = 4
    intermediate_size: Optional[int] = None
    hidden_act: str = 'swish'
    initializer_range: float = 0.006
    norm_eps: float = 1e-6
    bos_token_id: Optional[int] = 1
    eos_token_id: Optional[int] = 2
    tie_word_embeddings: bool = False
    fw_init_gain: float = 0.5
    model_type: str = 'lact_swiglu'
    # ttt-web extensions
    use_fast_weights: bool = True
    # A departure from the official layer (a pilot of issue 19, run by the engine too): the fast-weight
    # branch reads q, k, v from a projection of its own (attn.fw_qkv, no bias, no q/k norm) instead of
    # sharing attention's.
    fw_own_qkv: bool = False
    tokenizer: str = 'tokenizer.json'
    # keys we keep but do not interpret (fuse_norm, use_cache, ...), written back unchanged
    extra: Dict[str, Any] = field(default_factory=dict)

    # ---- derived sizes (same names as config.ts) ----
    @property
    def attn_head_dim(self) -> int:
        return self.hidden_size // self.num_attn_heads

    @property
    def fw_head_dim(self) -> int:
        return self.hidden_size // self.num_lact_heads

    @property
    def fw_hidden(self) -> int:
        return int(self.fw_head_dim * self.inter_multi)

    @property
    def mlp_intermediate_size(self) -> int:
        if self.intermediate_size is not None:
            return int(self.intermediate_size)
        return default_intermediate_size(self.hidden_size, self.hidden_ratio)

    def validate(self) -> 'LactConfig':
        D = self.hidden_size
        if D % self.num_attn_heads:
            raise ValueError(f'num_attn_heads {self.num_attn_heads} does not divide hidden_size {D}')
        if self.attn_head_dim % 2:
            raise ValueError(f'attention head dim {self.attn_head_dim} must be even for rotary embeddings')
        if D % self.num_lact_heads:
            raise ValueError(f'num_lact_heads {self.num_lact_heads} does not divide hidden_size {D}')
        if self.fw_hidden < 1:
            raise ValueError('inter_multi gives an empty fast-weight hidden size')
        if self.w0_w2_low_rank == 0 or self.w0_w2_low_rank < -1:
            raise ValueError('w0_w2_low_rank must be -1 (full) or a positive rank')
        if self.window_size is not None and self.window_size < 1:
            raise ValueError('window_size must be >= 1 or null')
        if self.lact_chunk_size < 1:
            raise ValueError('lact_chunk_size must be >= 1')
        for key, allowed in _FIXED.items():
            v = getattr(self, key, self.extra.get(key))
            if v is not None and v not in allowed:
                raise ValueError(f'{key}={v!r} is not supported (supported: {allowed})')
        if self.tokenizer not in ('byte', 'tokenizer.json'):
            raise ValueError('tokenizer must be "byte" or "tokenizer.json"')
        if self.tokenizer == 'byte' and self.vocab_size < 256:
            raise ValueError('a byte-level model needs vocab_size >= 256')
        return self

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'LactConfig':
        names = {f.name for f in dataclasses.fields(cls)} - {'extra'}
        kw: Dict[str, Any] = {}
        extra: Dict[str, Any] = {}
        for k, v in d.items():
            if k in names:
                # null means "default" for every key except window_size (null = full attention) and
                # intermediate_size / token ids (null = absent), exactly as config.ts reads them
                if v is None and k not in ('window_size', 'intermediate_size', 'bos_token_id', 'eos_token_id'):
                    continue
                kw[k] = v
            else:
                extra[k] = v
        cfg = cls(**kw, extra=extra)
        return cfg.validate()

    @classmethod
    def from_json(cls, path: str) -> 'LactConfig':
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> Dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != 'extra'}
        if d['intermediate_size'] is None:
            del d['intermediate_size']  # absent: the default rule applies
        out = dict(self.extra)
        out.update(d)
        return out

    def replace(self, **kw) -> 'LactConfig':
        return dataclasses.replace(self, **kw).validate()


def expected_tensors(c: LactConfig) -> Dict[str, list]:
    """name -> shape of every tensor a checkpoint of this config holds (mirror of config.ts)."""
    D = c.hidden_size
    m: Dict[str, list] = {'model.embeddings.weight': [c.vocab_size, D]}
    I = c.mlp_intermediate_size
    for i in range(c.num_hidden_layers):
        p = f'model.layers.{i}.'
        m[p + 'attn_norm.weight'] = [D]
        m[p + 'attn.qkv.weight'] = [3 * D, D]
        if c.qkv_bias:
            m[p + 'attn.qkv.bias'] = [3 * D]
        if c.attn_qk_norm:
            m[p + 'attn.q_norm.weight'] = [D]
            m[p + 'attn.k_norm.weight'] = [D]
        if c.use_fast_weights:
            Hf, df, dh, r = c.num_lact_heads, c.fw_head_dim, c.fw_hidden, c.w0_w2_low_rank
            if c.fw_own_qkv:
                m[p + 'attn.fw_qkv.weight'] = [3 * D, D]
            m[p + 'attn.qk_scale'] = [D, 2]
            m[p + 'attn.qk_offset'] = [D, 2]
            for w in ('w0', 'w2'):
                if r > 0:
                    m[p + f'attn.{w}.w_left'] = [Hf, dh, r]
                    m[p + f'attn.{w}.w_right'] = [Hf, r, df]
                else:
                    m[p + f'attn.{w}'] = [Hf, dh, df]
            m[p + 'attn.w1'] = [Hf, df, dh]
            m[p + 'attn.lr_proj.weight'] = [3 * Hf, D]
            m[p + 'attn.lr_proj.bias'] = [3 * Hf]
            m[p + 'attn.ttt_norm.weight'] = [df]
            if c.learnable_ttt_scale:
                m[p + 'attn.ttt_scale_proj.weight'] = [Hf, D]
                m[p + 'attn.ttt_scale_proj.bias'] = [Hf]
            if c.use_momentum:
                m[p + 'attn.momentum_proj.0.weight'] = [Hf, D]
                m[p + 'attn.momentum_proj.0.bias'] = [Hf]
        m[p + 'attn.o_proj.weight'] = [D, D]
        m[p + 'mlp_norm.weight'] = [D]
        m[p + 'mlp.gate_proj.weight'] = [I, D]
        m[p + 'mlp.up_proj.weight'] = [I, D]
        m[p + 'mlp.down_proj.weight'] = [D, I]
    m['model.norm.weight'] = [D]
    if not c.tie_word_embeddings:
        m['lm_head.weight'] = [c.vocab_size, D]
    return m
