"""Write / read a TTT-E2E model folder: config.json + model.safetensors (project names, [out, in])."""
from __future__ import annotations

import json
import os
import sys
from typing import Dict, Optional

import torch

from .config import E2EConfig, expected_tensors
from .model import E2EForCausalLM

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lact.safetensors_io import dtype_name, load_safetensors, save_safetensors  # noqa: E402


def checkpoint_tensors(model: E2EForCausalLM) -> Dict[str, torch.Tensor]:
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    exp = expected_tensors(model.config)
    got = {k: list(v.shape) for k, v in sd.items()}
    if got != exp:
        raise RuntimeError(f'state dict does not match expected tensors: missing {sorted(set(exp) - set(got))}, '
                           f'unexpected {sorted(set(got) - set(exp))}')
    return sd


def write_config(config: E2EConfig, out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'config.json'), 'w') as f:
        json.dump(config.to_dict(), f, indent=2)
        f.write('\n')


def export_state(config: E2EConfig, sd: Dict[str, torch.Tensor], out_dir: str, dtype: str = 'F32',
                 metadata: Optional[dict] = None) -> None:
    dt = dtype_name(dtype)
    if dt not in ('F32', 'F16', 'BF16'):
        raise ValueError('export dtype must be F32, F16 or BF16')
    exp = expected_tensors(config)
    got = {k: list(v.shape) for k, v in sd.items()}
    if got != exp:
        raise RuntimeError(f'tensors do not match expected_tensors(): missing {sorted(set(exp) - set(got))}, '
                           f'unexpected {sorted(set(got) - set(exp))}')
    write_config(config, out_dir)
    meta = {'format': 'pt'}
    if metadata:
        meta.update({str(k): str(v) for k, v in metadata.items()})
    save_safetensors(os.path.join(out_dir, 'model.safetensors'), sd, dtype=dt, metadata=meta)


def export_model(model: E2EForCausalLM, out_dir: str, dtype: str = 'F32', metadata: Optional[dict] = None) -> None:
    export_state(model.config, checkpoint_tensors(model), out_dir, dtype, metadata)


def load_model(model_dir: str, dtype: torch.dtype = torch.float32) -> E2EForCausalLM:
    """Reads a model folder; every tensor must be present with its expected shape (strict)."""
    cfg = E2EConfig.from_json(os.path.join(model_dir, 'config.json'))
    model = E2EForCausalLM(cfg)
    sd = load_safetensors(os.path.join(model_dir, 'model.safetensors'))
    model.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()}, strict=True)
    return model.to(dtype)
