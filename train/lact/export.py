"""Write / read a model folder: config.json + model.safetensors (official tensor names).

    /usr/bin/python3 -m lact.export --help   (from train/)
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Optional

import torch

from .config import LactConfig, expected_tensors
from .model import LaCTForCausalLM
from .safetensors_io import dtype_name, load_safetensors, save_safetensors


def checkpoint_tensors(model: LaCTForCausalLM):
    """The state dict as the checkpoint holds it, checked against expected_tensors()."""
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    exp = expected_tensors(model.config)
    got = {k: list(v.shape) for k, v in sd.items()}
    if got != exp:
        missing = sorted(set(exp) - set(got))
        extra = sorted(set(got) - set(exp))
        bad = sorted(k for k in set(exp) & set(got) if exp[k] != got[k])
        raise RuntimeError(f'state dict does not match expected tensors: missing {missing}, '
                           f'unexpected {extra}, wrong shapes {bad}')
    return sd


def export_model(model: LaCTForCausalLM, out_dir: str, dtype: str = 'F32',
                 metadata: Optional[dict] = None) -> None:
    """Writes out_dir/config.json and out_dir/model.safetensors (all floats as `dtype`: F32/F16/BF16)."""
    dt = dtype_name(dtype)
    if dt not in ('F32', 'F16', 'BF16'):
        raise ValueError('export dtype must be F32, F16 or BF16')
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'config.json'), 'w') as f:
        json.dump(model.config.to_dict(), f, indent=2)
        f.write('\n')
    meta = {'format': 'pt'}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    save_safetensors(os.path.join(out_dir, 'model.safetensors'), checkpoint_tensors(model), dtype=dt,
                     metadata=meta)


def load_model(model_dir: str, dtype: torch.dtype = torch.float32) -> LaCTForCausalLM:
    """Reads a model folder; every tensor must be present with its expected shape (strict)."""
    cfg = LactConfig.from_json(os.path.join(model_dir, 'config.json'))
    model = LaCTForCausalLM(cfg)
    sd = load_safetensors(os.path.join(model_dir, 'model.safetensors'))
    model.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True)
    return model.to(dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description='Re-export a model folder with another weight dtype.')
    ap.add_argument('src', help='folder with config.json + model.safetensors')
    ap.add_argument('dst', help='output folder')
    ap.add_argument('--dtype', default='F32', help='F32 | F16 | BF16')
    a = ap.parse_args()
    export_model(load_model(a.src), a.dst, a.dtype)


if __name__ == '__main__':
    main()
