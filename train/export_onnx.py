"""Exports a full-attention LaCT model folder as an ONNX decoder with a KV cache (for onnxruntime-web).

    /usr/bin/python3 train/export_onnx.py MODEL_DIR [--variant plain|fused] [--out MODEL_DIR/model.onnx] [--embed]

MODEL_DIR is a model folder (config.json + model.safetensors) of a model with `use_fast_weights: false`
and `window_size: null`: e.g. the benchmark's, written by `npm run bench -- model-folder --mode
full-attention --out DIR`. The graph is the PyTorch twin's math (train/lact/model.py; the decoders are
in train/lact/kv_decoder.py), one step of an incremental decoder:

  inputs   input_ids     int64 [1, T]
           position_ids  int64 [1, T]   absolute positions P .. P+T-1 (plain only; fused takes them from P)
           past_key_i    f32 [1, H, P, d]  keys after RoPE, of positions 0 .. P-1 (layer i)
           past_value_i  f32 [1, H, P, d]
  outputs  logits        f32 [1, T, V]
           present_key_i / present_value_i  f32 [1, H, P+T, d]  (past + these tokens: the next past)

T and P are dynamic: T = the prompt for prefill (P = 0, empty past), T = 1 for each decode step.
`--variant plain` (default) uses standard ONNX ops only (opset 17: Gather, MatMul, elementwise,
ReduceMean, Softmax, Concat, Slice, Reshape, Transpose, Where, Cos/Sin, Range, Cast, comparisons);
`--variant fused` uses the onnxruntime contrib ops an LLM prepared for onnxruntime-web has
(SimplifiedLayerNormalization, com.microsoft.GroupQueryAttention with rotary). Both run on the WebGPU
execution provider.

By default the float weights are not copied into the ONNX file: each initializer is an ONNX external-data
reference to its bytes in MODEL_DIR/model.safetensors (location "model.safetensors"; safetensors stores
raw little-endian tensors, which is what ONNX external data is), after checking that those bytes equal
what torch exported. The .onnx stays a few tens of KB and a runtime reads the very bytes our engine
reads. That needs an F32 model folder; `--embed` writes a self-contained ONNX instead.

Beside the .onnx it writes <out>.json: shapes, the sha256 of model.safetensors (a consumer checks that
it has the same weights), the op counts, and the twin-vs-decoder check this script runs before export
(prefill + decode with the cache against the twin's full forward, float64 and float32).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import io
import json
import os
import sys
import time
from typing import List, Tuple

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from lact.export import load_model  # noqa: E402
from lact.kv_decoder import DECODERS  # noqa: E402
from lact.model import LaCTForCausalLM  # noqa: E402
from lact import onnx_io  # noqa: E402

OPSET = 17


def empty_past(c, dtype) -> List[torch.Tensor]:
    return [torch.zeros(1, c.num_attn_heads, 0, c.attn_head_dim, dtype=dtype) for _ in range(2 * c.num_hidden_layers)]


@torch.no_grad()
def check_against_twin(model: LaCTForCausalLM, variant: str, tokens: List[int], prefill: int, capacity: int = 0) -> float:
    """Max |logit difference| between the twin's whole-sequence forward and the decoder run as prefill
    (the first `prefill` tokens) then one token at a time through the cache, with the model's dtype.
    `shared` returns the last row's logits only, so each run is compared on that row; with `capacity` > 0
    its past is a buffer of that many rows bound as the present too (updated in place), else it grows."""
    model.set_attn_impl('manual')
    dtype = next(model.parameters()).dtype
    dec = DECODERS[variant](model, angle_dtype=dtype).eval()
    ids = torch.tensor([tokens])
    ref = model(ids)[0]
    c = model.config
    past = [torch.zeros(1, c.num_attn_heads, capacity, c.attn_head_dim, dtype=dtype) for _ in range(2 * c.num_hidden_layers)] \
        if capacity > 0 else empty_past(c, dtype)
    outs, want = [], []
    for s, e in [(0, prefill)] + [(j, j + 1) for j in range(prefill, len(tokens))]:
        if getattr(dec, 'uses_attention_mask', False):
            r = dec(ids[:, s:e], torch.ones(1, e, dtype=torch.int64), *past)
            want.append(ref[e - 1:e])
        elif dec.uses_position_ids:
            r = dec(ids[:, s:e], torch.arange(s, e)[None, :], *past)
            want.append(ref[s:e])
        else:
            r = dec(ids[:, s:e], *past)
            want.append(ref[s:e])
        outs.append(r[0][0])
        past = list(r[1:])
        if capacity > 0 and past[0].shape[2] != capacity:
            raise SystemExit(f'the shared-buffer present has {past[0].shape[2]} rows, not the capacity {capacity}')
    return (torch.cat(outs) - torch.cat(want)).abs().max().item()


def io_names(c, variant: str) -> Tuple[List[str], List[str]]:
    past, present = [], []
    for i in range(c.num_hidden_layers):
        if variant == 'shared':  # the names onnxruntime-genai and transformers.js use
            past += [f'past_key_values.{i}.key', f'past_key_values.{i}.value']
            present += [f'present.{i}.key', f'present.{i}.value']
        else:
            past += [f'past_key_{i}', f'past_value_{i}']
            present += [f'present_key_{i}', f'present_value_{i}']
    if variant == 'shared':
        first = ['input_ids', 'attention_mask']
    else:
        first = ['input_ids', 'position_ids'] if DECODERS[variant].uses_position_ids else ['input_ids']
    return first + past, ['logits'] + present


def export(model: LaCTForCausalLM, variant: str, max_positions: int) -> bytes:
    """The ONNX bytes (weights embedded, initializers named by their state-dict names)."""
    c = model.config
    dec = (DECODERS[variant](model, max_positions=max_positions) if variant == 'shared' else DECODERS[variant](model)).eval()
    inputs, outputs = io_names(c, variant)
    # A non-empty past while tracing, so no size is specialised to 0; both axes are declared dynamic.
    P, T = 3, 5
    pos = (torch.arange(P, P + T)[None, :],) if dec.uses_position_ids else ()
    mask = (torch.ones(1, P + T, dtype=torch.int64),) if variant == 'shared' else ()
    args = (torch.randint(0, c.vocab_size, (1, T)), *pos, *mask,
            *[torch.randn(1, c.num_attn_heads, P, c.attn_head_dim) for _ in range(2 * c.num_hidden_layers)])
    dyn = {'input_ids': {1: 'T'}, 'position_ids': {1: 'T'}, 'logits': {1: 'T'}}
    if variant == 'shared':
        dyn = {'input_ids': {1: 'sequence_length'}, 'attention_mask': {1: 'total_sequence_length'}}
    for n in inputs:
        if n.startswith('past_'):
            dyn[n] = {2: 'past_sequence_length' if variant == 'shared' else 'P'}
    for n in outputs[1:]:
        dyn[n] = {2: 'present_sequence_length' if variant == 'shared' else 'P_plus_T'}
    buf = io.BytesIO()
    # No constant folding: folding would turn each Linear's transposed weight into a new, anonymous
    # initializer; unfolded, every initializer is a state-dict tensor (external-data-able), and the
    # runtime folds the transposes once when it loads the graph.
    # torch >= 2.5 defaults to the dynamo exporter (it needs onnxscript); this graph is the TorchScript
    # exporter's, which both Debian's torch 1.13 and the venv's 2.13 have.
    legacy = {'dynamo': False} if 'dynamo' in inspect.signature(torch.onnx.export).parameters else {}
    try:
        torch.onnx.export(dec, args, buf, input_names=inputs, output_names=outputs, dynamic_axes=dyn,
                          opset_version=OPSET, do_constant_folding=False, **legacy)
    except Exception as e:  # noqa: BLE001 (torch.onnx.errors.CheckerError; its module moved across versions)
        if type(e).__name__ != 'CheckerError':
            raise
        # SimplifiedLayerNormalization is onnxruntime's, in the ONNX domain, so ONNX's checker does not
        # know it; torch has written the whole model before checking. Anything else is a real error.
        if 'SimplifiedLayerNormalization' not in str(e) or variant != 'fused':
            raise
    return buf.getvalue()


def state_dict_name(onnx_name: str) -> str:
    # The decoder holds the twin as `self.model`, so torch names its parameters `model.<state dict name>`.
    return onnx_name[len('model.'):] if onnx_name.startswith('model.') else onnx_name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('model_dir')
    ap.add_argument('--out', default=None, help='default: MODEL_DIR/model.onnx')
    ap.add_argument('--variant', choices=sorted(DECODERS), default='plain',
                    help='plain: standard ONNX ops; fused: onnxruntime contrib ops (SimplifiedLayerNormalization, '
                         'GroupQueryAttention)')
    ap.add_argument('--embed', action='store_true', help='copy the weights into the .onnx (self-contained)')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--external-location', default='model.safetensors',
                    help='the file name the external-data references give (the bytes are model.safetensors\'s '
                         'either way): transformers.js looks for onnx/model.onnx_data')
    ap.add_argument('--max-positions', type=int, default=65536,
                    help='shared: rows of the cos/sin caches, the longest context the graph can run')
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out = a.out or os.path.join(a.model_dir, 'model.onnx')
    st_path = os.path.join(a.model_dir, 'model.safetensors')
    t0 = time.time()

    model64 = load_model(a.model_dir, torch.float64).eval()
    c = model64.config
    g = torch.Generator().manual_seed(0)
    tokens = [c.bos_token_id if c.bos_token_id is not None else 0] + \
        torch.randint(0, min(c.vocab_size, 256), (39,), generator=g).tolist()
    err64 = check_against_twin(model64, a.variant, tokens, 24)
    model = load_model(a.model_dir, torch.float32).eval()
    err32 = check_against_twin(model, a.variant, tokens, 24)
    print(f'decoder vs twin (24-token prefill + 16 decode steps): max |dlogit| f64 {err64:.2e}, f32 {err32:.2e}')
    if err64 > 1e-9 or err32 > 1e-3:
        raise SystemExit('the KV-cache decoder does not reproduce the twin')
    shared64 = None
    if a.variant == 'shared':
        # The same run with a past of fixed capacity bound as the present (updated in place).
        shared64 = check_against_twin(model64, a.variant, tokens, 24, capacity=64)
        print(f'with a shared past/present buffer of 64 rows: max |dlogit| f64 {shared64:.2e}')
        if shared64 > 1e-9:
            raise SystemExit('the shared-buffer decoder does not reproduce the twin')

    onnx = export(model, a.variant, a.max_positions)
    external: List[str] = []
    if not a.embed:
        onnx, external = onnx_io.externalize(onnx, st_path, a.external_location, state_dict_name)
        expected = set(model.state_dict())
        missing = sorted(expected - {state_dict_name(n) for n in external})
        if missing:
            raise SystemExit(f'these weights stayed embedded (not found or not F32 in model.safetensors): {missing}; '
                             'use an F32 model folder or --embed')
    with open(st_path, 'rb') as f:
        st_sha = hashlib.sha256(f.read()).hexdigest()
    inputs, outputs = io_names(c, a.variant)
    meta = {
        'producer': 'ttt-web train/export_onnx.py',
        'variant': a.variant,
        'safetensors_sha256': st_sha,
        'weights': 'embedded' if a.embed else 'external: model.safetensors' if a.external_location == 'model.safetensors'
        else f'external: {a.external_location} (the bytes of model.safetensors)',
    }
    onnx = onnx_io.add_metadata(onnx, meta)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, 'wb') as f:
        f.write(onnx)
    info = {
        **meta,
        'command': 'train/export_onnx.py ' + ' '.join(sys.argv[1:]),
        'torch': torch.__version__,
        'opset': OPSET,
        'config': c.to_dict(),
        'inputs': inputs,
        'outputs': outputs,
        'shapes': {'input_ids': ['1', 'T'], **({'position_ids': ['1', 'T']} if 'position_ids' in inputs else {}),
                   'past': ['1', str(c.num_attn_heads), 'P', str(c.attn_head_dim)],
                   'logits': ['1', 'T', str(c.vocab_size)],
                   'present': ['1', str(c.num_attn_heads), 'P+T', str(c.attn_head_dim)]} if a.variant != 'shared' else
                  {'input_ids': ['1', 'T'], 'attention_mask': ['1', 'P+T'],
                   'past': ['1', str(c.num_attn_heads), 'C', str(c.attn_head_dim)],
                   'logits': ['1', '1', str(c.vocab_size)],
                   'present': ['1', str(c.num_attn_heads), 'max(C, P+T)', str(c.attn_head_dim)]},
        'external_initializers': len(external),
        'onnx_bytes': len(onnx),
        'ops': dict(sorted(onnx_io.op_types(onnx).items())),
        'check': {'tokens': len(tokens), 'prefill': 24, 'max_abs_dlogit_f64': err64, 'max_abs_dlogit_f32': err32,
                  **({'shared_buffer_rows': 64, 'shared_max_abs_dlogit_f64': shared64} if shared64 is not None else {})},
        **({'max_positions': a.max_positions, 'logits': 'last row only'} if a.variant == 'shared' else {}),
    }
    with open(out + '.json', 'w') as f:
        json.dump(info, f, indent=1)
        f.write('\n')
    print(f'wrote {out} ({len(onnx)} bytes, {len(external)} initializers in model.safetensors) '
          f'and {out}.json in {time.time() - t0:.1f} s')


if __name__ == '__main__':
    main()
