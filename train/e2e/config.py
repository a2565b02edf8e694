"""config.json <-> E2EConfig for the TTT-E2E language model (model_type "ttt_e2e").

The keys are the spec's hyperparameter JSON (shared/spec/ttt-e2e-language-model.md, "The official
parameter tree") plus the project keys `model_type`, `tokenizer` and `tie_word_embeddings` (the spec's
`tied_head`, accepted as an alias on reading):

    model_type                    "ttt_e2e"
    vocab_size                    V
    hidden_size                   d
    num_heads                     H
    head_dim                      hd (must equal d / H: plain multi-head attention)
    intermediate_size_static_mlp  f of the static SwiGLU MLP of every block
    intermediate_size_dynamic_mlp f of the dynamic SwiGLU MLP of the TTT blocks
    num_layers                    L
    num_ttt_layers                S (the last S blocks are TTT blocks), 0 <= S <= L
    mini_batch_size               B (inner-loop chunk)
    sliding_window                W (keys p-W < j <= p)
    rope_theta                    interleaved RoPE base
    rms_norm_eps                  eps of every RMSNorm
    bos_token_id, eos_token_id    ids (targets equal to BOS are skipped by the inner loss)
    inner_lr                      eta of the inner SGD step
    inner_clip_global_norm        max norm of the ONE global clip (<= 0: no clip)
    tie_word_embeddings           true (the only supported value: logits = norm(h) @ E^T)
    tokenizer                     "byte" (ids 0..255 are bytes) or "tokenizer.json"

Tensor names and shapes of a checkpoint: `expected_tensors()`. Linear weights are stored [out, in]
(PyTorch nn.Linear, as on the LaCT side: y = x @ W^T); the official tree stores [in, out].
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List


@dataclass
class E2EConfig:
    vocab_size: int = 256
    hidden_size: int = 768
    num_heads: int = 12
    head_dim: int = 64
    intermediate_size_static_mlp: int = 1664
    intermediate_size_dynamic_mlp: int = 1664
    num_layers: int = 12
    num_ttt_layers: int = 3
    mini_batch_size: int = 1024
    sliding_window: int = 8192
    rope_theta: float = 500000.0
    rms_norm_eps: float = 1e-6
    bos_token_id: int = 1
    eos_token_id: int = 2
    inner_lr: float = 1.0
    inner_clip_global_norm: float = 1.0
    tie_word_embeddings: bool = True
    tokenizer: str = 'byte'
    model_type: str = 'ttt_e2e'
    # keys we keep but do not interpret, written back unchanged
    extra: Dict[str, Any] = field(default_factory=dict)

    # ---- derived ----
    @property
    def first_ttt_layer(self) -> int:
        return self.num_layers - self.num_ttt_layers

    def is_ttt_layer(self, i: int) -> bool:
        return i >= self.first_ttt_layer

    @property
    def ttt_layers(self) -> List[int]:
        return list(range(self.first_ttt_layer, self.num_layers))

    def validate(self) -> 'E2EConfig':
        if self.model_type != 'ttt_e2e':
            raise ValueError(f'model_type must be "ttt_e2e", got {self.model_type!r}')
        for k in ('vocab_size', 'hidden_size', 'num_heads', 'head_dim', 'intermediate_size_static_mlp',
                  'intermediate_size_dynamic_mlp', 'num_layers', 'mini_batch_size', 'sliding_window'):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f'{k} must be a positive integer, got {v!r}')
        if self.num_heads * self.head_dim != self.hidden_size:
            raise ValueError(f'num_heads * head_dim ({self.num_heads} * {self.head_dim}) must equal '
                             f'hidden_size {self.hidden_size}')
        if self.head_dim % 2:
            raise ValueError(f'head_dim {self.head_dim} must be even for rotary embeddings')
        if not (0 <= self.num_ttt_layers <= self.num_layers):
            raise ValueError(f'num_ttt_layers {self.num_ttt_layers} must be in 0..num_layers')
        if self.tie_word_embeddings is not True:
            raise ValueError('tie_word_embeddings must be true (the TTT-E2E head is the embedding)')
        if self.tokenizer not in ('byte', 'tokenizer.json'):
            raise ValueError('tokenizer must be "byte" or "tokenizer.json"')
        if self.tokenizer == 'byte' and self.vocab_size < 256:
            raise ValueError('a byte-level model needs vocab_size >= 256')
        for k in ('bos_token_id', 'eos_token_id'):
            v = getattr(self, k)
            if not isinstance(v, int) or not (0 <= v < self.vocab_size):
                raise ValueError(f'{k} must be an id inside the vocabulary, got {v!r}')
        if not (self.inner_lr >= 0):
            raise ValueError('inner_lr must be >= 0')
        if not (self.rms_norm_eps > 0 and self.rope_theta > 0):
            raise ValueError('rms_norm_eps and rope_theta must be > 0')
        return self

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> 'E2EConfig':
        names = {f.name for f in dataclasses.fields(cls)} - {'extra'}
        kw: Dict[str, Any] = {}
        extra: Dict[str, Any] = {}
        for k, v in d.items():
            if k == 'tied_head':  # the spec's hyperparameter-JSON name
                kw['tie_word_embeddings'] = v
            elif k in names:
                kw[k] = v
            else:
                extra[k] = v
        for k in ('rope_theta', 'rms_norm_eps', 'inner_lr', 'inner_clip_global_norm'):
            if k in kw:
                kw[k] = float(kw[k])
        return cls(**kw, extra=extra).validate()

    @classmethod
    def from_json(cls, path: str) -> 'E2EConfig':
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {'model_type': self.model_type}
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ('extra', 'model_type')})
        for k, v in self.extra.items():
            out.setdefault(k, v)
        return out

    def replace(self, **kw) -> 'E2EConfig':
        return dataclasses.replace(self, **kw).validate()


# names of the hyperparameter JSON that goes beside an official-layout weights file (the spec's list)
HYPER_KEYS = ('vocab_size', 'hidden_size', 'num_heads', 'head_dim', 'intermediate_size_static_mlp',
              'intermediate_size_dynamic_mlp', 'num_layers', 'num_ttt_layers', 'mini_batch_size',
              'sliding_window', 'rope_theta', 'rms_norm_eps', 'bos_token_id', 'eos_token_id', 'inner_lr',
              'inner_clip_global_norm', 'tied_head')


def expected_tensors(c: E2EConfig) -> Dict[str, list]:
    """name -> shape of every tensor of a project-form checkpoint (linear weights [out, in])."""
    d, hd, f, fd, V = c.hidden_size, c.head_dim, c.intermediate_size_static_mlp, c.intermediate_size_dynamic_mlp, c.vocab_size
    m: Dict[str, list] = {'model.embed.weight': [V, d]}
    for i in range(c.num_layers):
        p = f'model.layers.{i}.'
        m[p + 'attn_norm.weight'] = [d]
        m[p + 'attn.q_proj.weight'] = [d, d]
        m[p + 'attn.k_proj.weight'] = [d, d]
        m[p + 'attn.v_proj.weight'] = [d, d]
        m[p + 'attn.o_proj.weight'] = [d, d]
        m[p + 'attn.q_norm.weight'] = [hd]
        m[p + 'attn.k_norm.weight'] = [hd]
        m[p + 'attn_post_norm.weight'] = [d]
        if c.is_ttt_layer(i):
            m[p + 'dyn_norm.weight'] = [d]
            m[p + 'dyn_mlp.w1.weight'] = [fd, d]
            m[p + 'dyn_mlp.w3.weight'] = [fd, d]
            m[p + 'dyn_mlp.w2.weight'] = [d, fd]
            m[p + 'dyn_post_norm.weight'] = [d]
        m[p + 'mlp_norm.weight'] = [d]
        m[p + 'mlp.w1.weight'] = [f, d]
        m[p + 'mlp.w3.weight'] = [f, d]
        m[p + 'mlp.w2.weight'] = [d, f]
        m[p + 'mlp_post_norm.weight'] = [d]
    m['model.norm.weight'] = [d]
    return m
