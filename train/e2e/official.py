"""The official TTT-E2E parameter tree (test-time-training/e2e, flattened with dots) <-> the project form.

Official leaves (stacked over the L blocks, or over the S TTT blocks for prime_storage; linear weights
[in, out], y = x @ W):

    language_model.model.wte.weight                                   [V, d]
    language_model.model.ln_f.weight                                  [d]
    language_model.model.h.blocks.seq_norm.weight                     [L, d]
    language_model.model.h.blocks.seq_post_norm.weight                [L, d]
    language_model.model.h.blocks.seq_modeling_block.{wq,wk,wv,wo}.weight  [L, d, d]
    language_model.model.h.blocks.seq_modeling_block.{q_norm,k_norm}.weight [L, hd]
    language_model.model.h.blocks.ffn_norm.weight                     [L, d]
    language_model.model.h.blocks.ffn_post_norm.weight                [L, d]
    language_model.model.h.blocks.feed_forward.{w1,w3}.weight         [L, d, f]; w2 [L, f, d]
    language_model.model.h.prime_storage.ffn_prime_norm.weight        [S, d]
    language_model.model.h.prime_storage.ffn_prime_post_norm.weight   [S, d]
    language_model.model.h.prime_storage.feed_forward_prime.{w1,w3}.weight [S, d, fd]; w2 [S, fd, d]

Block L-S+j takes prime_storage[j]. Project linear weights are [out, in], i.e. the transpose of one
official slice; norms and the embedding are copied as they are.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch

from .config import HYPER_KEYS, E2EConfig, expected_tensors

P = 'language_model.model.'
BLK = P + 'h.blocks.'
PRIME = P + 'h.prime_storage.'

# (official leaf under h.blocks., project suffix under model.layers.{i}., transposed?)
BLOCK_MAP: List[Tuple[str, str, bool]] = [
    ('seq_norm.weight', 'attn_norm.weight', False),
    ('seq_post_norm.weight', 'attn_post_norm.weight', False),
    ('seq_modeling_block.wq.weight', 'attn.q_proj.weight', True),
    ('seq_modeling_block.wk.weight', 'attn.k_proj.weight', True),
    ('seq_modeling_block.wv.weight', 'attn.v_proj.weight', True),
    ('seq_modeling_block.wo.weight', 'attn.o_proj.weight', True),
    ('seq_modeling_block.q_norm.weight', 'attn.q_norm.weight', False),
    ('seq_modeling_block.k_norm.weight', 'attn.k_norm.weight', False),
    ('ffn_norm.weight', 'mlp_norm.weight', False),
    ('ffn_post_norm.weight', 'mlp_post_norm.weight', False),
    ('feed_forward.w1.weight', 'mlp.w1.weight', True),
    ('feed_forward.w2.weight', 'mlp.w2.weight', True),
    ('feed_forward.w3.weight', 'mlp.w3.weight', True),
]
# (official leaf under h.prime_storage., project suffix under model.layers.{L-S+j}., transposed?)
PRIME_MAP: List[Tuple[str, str, bool]] = [
    ('ffn_prime_norm.weight', 'dyn_norm.weight', False),
    ('ffn_prime_post_norm.weight', 'dyn_post_norm.weight', False),
    ('feed_forward_prime.w1.weight', 'dyn_mlp.w1.weight', True),
    ('feed_forward_prime.w2.weight', 'dyn_mlp.w2.weight', True),
    ('feed_forward_prime.w3.weight', 'dyn_mlp.w3.weight', True),
]
TOP_MAP: List[Tuple[str, str]] = [('wte.weight', 'model.embed.weight'), ('ln_f.weight', 'model.norm.weight')]


def official_tensors(c: E2EConfig) -> Dict[str, list]:
    """name -> shape of every float leaf of an official-layout flat file for this config."""
    L, S, d, hd = c.num_layers, c.num_ttt_layers, c.hidden_size, c.head_dim
    f, fd = c.intermediate_size_static_mlp, c.intermediate_size_dynamic_mlp
    m = {P + 'wte.weight': [c.vocab_size, d], P + 'ln_f.weight': [d]}
    for k in ('seq_norm', 'seq_post_norm', 'ffn_norm', 'ffn_post_norm'):
        m[BLK + k + '.weight'] = [L, d]
    for k in ('wq', 'wk', 'wv', 'wo'):
        m[BLK + f'seq_modeling_block.{k}.weight'] = [L, d, d]
    for k in ('q_norm', 'k_norm'):
        m[BLK + f'seq_modeling_block.{k}.weight'] = [L, hd]
    m[BLK + 'feed_forward.w1.weight'] = [L, d, f]
    m[BLK + 'feed_forward.w3.weight'] = [L, d, f]
    m[BLK + 'feed_forward.w2.weight'] = [L, f, d]
    if S > 0:
        m[PRIME + 'ffn_prime_norm.weight'] = [S, d]
        m[PRIME + 'ffn_prime_post_norm.weight'] = [S, d]
        m[PRIME + 'feed_forward_prime.w1.weight'] = [S, d, fd]
        m[PRIME + 'feed_forward_prime.w3.weight'] = [S, d, fd]
        m[PRIME + 'feed_forward_prime.w2.weight'] = [S, fd, d]
    return m


def config_from_hyper(hyper: Dict, tokenizer: str = None) -> E2EConfig:
    """The project config from the spec's hyperparameter JSON (`tied_head` -> tie_word_embeddings;
    tokenizer: "byte" when vocab_size is 256 unless given)."""
    missing = [k for k in HYPER_KEYS if k not in hyper]
    if missing:
        raise ValueError(f'hyperparameter JSON lacks {missing}')
    d = {k: v for k, v in hyper.items() if k in HYPER_KEYS or k == 'tokenizer'}
    if tokenizer is None:
        tokenizer = d.pop('tokenizer', None) or ('byte' if hyper['vocab_size'] == 256 else 'tokenizer.json')
    d['tokenizer'] = tokenizer
    d['model_type'] = 'ttt_e2e'
    return E2EConfig.from_dict(d)


def hyper_from_config(c: E2EConfig) -> Dict:
    d = c.to_dict()
    out = {k: d[k] for k in HYPER_KEYS if k != 'tied_head'}
    out['tied_head'] = bool(c.tie_word_embeddings)
    return out


def _check(flat: Dict[str, torch.Tensor], exp: Dict[str, list], what: str) -> None:
    got = {k: list(v.shape) for k, v in flat.items()}
    missing = sorted(set(exp) - set(got))
    extra = sorted(set(got) - set(exp))
    bad = sorted(f'{k}: {got[k]} != {exp[k]}' for k in set(exp) & set(got) if exp[k] != got[k])
    if missing or extra or bad:
        raise ValueError(f'{what} does not match: missing {missing}, unexpected {extra}, wrong shapes {bad}')


def from_official(flat: Dict[str, torch.Tensor], c: E2EConfig) -> Dict[str, torch.Tensor]:
    """Official flat tree -> project state dict (names of expected_tensors(c), [out, in] linears)."""
    _check(flat, official_tensors(c), 'official tensors')
    L, S = c.num_layers, c.num_ttt_layers
    sd: Dict[str, torch.Tensor] = {}
    for o, p in TOP_MAP:
        sd[p] = flat[P + o].clone()
    for o, p, tr in BLOCK_MAP:
        stack = flat[BLK + o]
        for i in range(L):
            sd[f'model.layers.{i}.{p}'] = (stack[i].T if tr else stack[i]).contiguous().clone()
    for o, p, tr in PRIME_MAP:
        if S == 0:
            break
        stack = flat[PRIME + o]
        for j in range(S):
            sd[f'model.layers.{L - S + j}.{p}'] = (stack[j].T if tr else stack[j]).contiguous().clone()
    _check(sd, expected_tensors(c), 'converted tensors')
    return sd


def to_official(sd: Dict[str, torch.Tensor], c: E2EConfig) -> Dict[str, torch.Tensor]:
    """Project state dict -> official flat tree (stacked, [in, out] linears): the converter's inverse."""
    _check(sd, expected_tensors(c), 'project tensors')
    L, S = c.num_layers, c.num_ttt_layers
    flat: Dict[str, torch.Tensor] = {}
    for o, p in TOP_MAP:
        flat[P + o] = sd[p].detach().clone()
    for o, p, tr in BLOCK_MAP:
        ws = [sd[f'model.layers.{i}.{p}'].detach() for i in range(L)]
        flat[BLK + o] = torch.stack([w.T if tr else w for w in ws], 0).contiguous()
    if S > 0:
        for o, p, tr in PRIME_MAP:
            ws = [sd[f'model.layers.{L - S + j}.{p}'].detach() for j in range(S)]
            flat[PRIME + o] = torch.stack([w.T if tr else w for w in ws], 0).contiguous()
    _check(flat, official_tensors(c), 'official tensors')
    return flat


def mapping_table(c: E2EConfig = None) -> List[Tuple[str, str, str]]:
    """(official path, project name, note) rows for the README."""
    rows = [(P + o, p, 'copied') for o, p in TOP_MAP]
    for o, p, tr in BLOCK_MAP:
        rows.append((BLK + o + '[i]', f'model.layers.{{i}}.{p}', 'transposed' if tr else 'copied'))
    for o, p, tr in PRIME_MAP:
        rows.append((PRIME + o + '[j]', f'model.layers.{{L-S+j}}.{p}', 'transposed' if tr else 'copied'))
    return rows
