"""PyTorch twin of the TTT-E2E language model (test-time-training/e2e semantics, project tensor names).

See train/README.md ("The TTT-E2E twin") and shared/spec/ttt-e2e-language-model.md.
"""
from .config import E2EConfig, expected_tensors
from .model import E2EForCausalLM, init_official
from .inner import chunk_loss, clip_by_global_norm, ttt_forward, outer_loss, train_step, make_outer_optimizer
from .stream import E2EStream
from .export import export_model, load_model

__all__ = [
    'E2EConfig', 'expected_tensors', 'E2EForCausalLM', 'init_official', 'chunk_loss', 'clip_by_global_norm',
    'ttt_forward', 'outer_loss', 'train_step', 'make_outer_optimizer', 'E2EStream', 'export_model', 'load_model',
]
