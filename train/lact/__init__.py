"""PyTorch twin of the LaCT language model (official `LaCTForCausalLM` semantics and tensor names).

See /work/main/train/README.md and the spec at shared/spec/lact-language-model.md.
"""
from .config import LactConfig, expected_tensors
from .model import LaCTForCausalLM, init_official, newton_schulz5
from .safetensors_io import load_safetensors, save_safetensors
from .export import export_model, load_model

__all__ = [
    'LactConfig', 'expected_tensors', 'LaCTForCausalLM', 'init_official', 'newton_schulz5',
    'load_safetensors', 'save_safetensors', 'export_model', 'load_model',
]
