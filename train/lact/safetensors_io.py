"""A small safetensors reader/writer (no `safetensors` package needed).

Format: 8-byte little-endian u64 header length N; N bytes of UTF-8 JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, optional "__metadata__": {str: str}};
then the data buffer (offsets relative to its start, little-endian, row-major). The header is padded
with spaces to a multiple of 8 bytes.
"""
from __future__ import annotations

import json
import struct
from typing import Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch

# safetensors dtype -> (torch dtype, numpy dtype used for the raw bytes)
_DTYPES = {
    'F64': (torch.float64, np.dtype('<f8')),
    'F32': (torch.float32, np.dtype('<f4')),
    'F16': (torch.float16, np.dtype('<f2')),
    'BF16': (torch.bfloat16, np.dtype('<i2')),  # raw 16-bit patterns, viewed as bfloat16 in torch
    'I64': (torch.int64, np.dtype('<i8')),
    'I32': (torch.int32, np.dtype('<i4')),
    'I16': (torch.int16, np.dtype('<i2')),
    'I8': (torch.int8, np.dtype('i1')),
    'U8': (torch.uint8, np.dtype('u1')),
    'BOOL': (torch.bool, np.dtype('?')),
}
_BY_TORCH = {t: name for name, (t, _) in _DTYPES.items()}
_ALIASES = {'f32': 'F32', 'float32': 'F32', 'f16': 'F16', 'float16': 'F16', 'bf16': 'BF16',
            'bfloat16': 'BF16', 'f64': 'F64', 'float64': 'F64', 'i32': 'I32', 'int32': 'I32',
            'i64': 'I64', 'int64': 'I64'}

TensorLike = Union[torch.Tensor, np.ndarray]


def dtype_name(d: str) -> str:
    d2 = _ALIASES.get(d.lower(), d.upper()) if isinstance(d, str) else d
    if d2 not in _DTYPES:
        raise ValueError(f'unsupported safetensors dtype {d!r}')
    return d2


def _to_bytes(t: torch.Tensor, dt: str) -> bytes:
    tdt, ndt = _DTYPES[dt]
    t = t.detach().to('cpu').to(tdt).contiguous()
    if dt == 'BF16':
        arr = t.view(torch.int16).numpy()
    else:
        arr = t.numpy()
    return arr.astype(ndt, copy=False).tobytes()


def save_safetensors(path: str, tensors: Mapping[str, TensorLike],
                     dtype: Optional[Union[str, Mapping[str, str]]] = None,
                     metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write tensors. `dtype`: None (keep each tensor's dtype), one name ('F32', 'bf16', ...) applied to
    floating tensors only, or a per-tensor mapping."""
    header: Dict[str, object] = {}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        if isinstance(t, np.ndarray):
            t = torch.from_numpy(np.ascontiguousarray(t))
        if isinstance(dtype, Mapping):
            dt = dtype_name(dtype[name]) if name in dtype else _BY_TORCH[t.dtype]
        elif dtype is not None and t.is_floating_point():
            dt = dtype_name(dtype)
        else:
            dt = _BY_TORCH[t.dtype]
        b = _to_bytes(t, dt)
        header[name] = {'dtype': dt, 'shape': list(t.shape), 'data_offsets': [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header['__metadata__'] = {str(k): str(v) for k, v in metadata.items()}
    hb = json.dumps(header, separators=(',', ':')).encode('utf-8')
    hb += b' ' * ((-len(hb)) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hb)))
        f.write(hb)
        for b in blobs:
            f.write(b)


def load_safetensors_with_metadata(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    with open(path, 'rb') as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f'{path}: truncated (no header length)')
    (n,) = struct.unpack('<Q', raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f'{path}: header length {n} exceeds the file')
    header = json.loads(raw[8:8 + n].decode('utf-8'))
    data = memoryview(raw)[8 + n:]
    meta = header.pop('__metadata__', {}) or {}
    out: Dict[str, torch.Tensor] = {}
    for name, info in header.items():
        dt = info['dtype']
        if dt not in _DTYPES:
            raise ValueError(f'{path}: tensor {name} has unsupported dtype {dt}')
        tdt, ndt = _DTYPES[dt]
        shape = tuple(int(s) for s in info['shape'])
        b, e = info['data_offsets']
        count = int(np.prod(shape)) if shape else 1
        if e - b != count * ndt.itemsize or e > len(data) or b < 0:
            raise ValueError(f'{path}: tensor {name} has bad data_offsets {b}..{e} for {dt} {list(shape)}')
        arr = (np.frombuffer(data[b:e], dtype=ndt).reshape(shape).copy() if count
               else np.zeros(shape, dtype=ndt))
        t = torch.from_numpy(arr)
        if dt == 'BF16':
            t = t.view(torch.bfloat16)
        out[name] = t
    return out, meta


def load_safetensors(path: str) -> Dict[str, torch.Tensor]:
    return load_safetensors_with_metadata(path)[0]
