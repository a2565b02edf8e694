"""Convert an official-layout TTT-E2E checkpoint (flat safetensors keyed by the official tree paths, plus
the spec's hyperparameter JSON) into a project model folder (config.json + model.safetensors), or back.

    /usr/bin/python3 train/convert_e2e.py WEIGHTS.safetensors HYPER.json OUT_DIR [--dtype F32] [--tokenizer PATH]
    /usr/bin/python3 train/convert_e2e.py --to-official MODEL_DIR WEIGHTS.safetensors HYPER.json

The official tree paths, their stacking over L (or S) and their [in, out] layout: train/e2e/official.py
and the table in train/README.md. A 256-entry vocabulary is written as `tokenizer: "byte"`; otherwise the
folder needs a tokenizer.json (copied from --tokenizer when given).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from e2e.config import E2EConfig  # noqa: E402
from e2e.export import export_state  # noqa: E402
from e2e.official import config_from_hyper, from_official, hyper_from_config, to_official  # noqa: E402
from lact.safetensors_io import load_safetensors, save_safetensors  # noqa: E402


def convert(weights: str, hyper_path: str, out_dir: str, dtype: str = 'F32', tokenizer_json: str = None) -> E2EConfig:
    with open(hyper_path) as f:
        hyper = json.load(f)
    cfg = config_from_hyper(hyper)
    flat = {k: v.to(torch.float32) for k, v in load_safetensors(weights).items()}
    sd = from_official(flat, cfg)
    export_state(cfg, sd, out_dir, dtype=dtype, metadata={'converted_from': os.path.basename(weights)})
    if cfg.tokenizer == 'tokenizer.json':
        if tokenizer_json:
            shutil.copyfile(tokenizer_json, os.path.join(out_dir, 'tokenizer.json'))
        elif not os.path.exists(os.path.join(out_dir, 'tokenizer.json')):
            print(f'warning: vocab_size {cfg.vocab_size} is not a byte vocabulary; put its tokenizer.json '
                  f'in {out_dir}', file=sys.stderr)
    return cfg


def to_official_files(model_dir: str, weights: str, hyper_path: str, dtype: str = 'F32') -> None:
    """The inverse: a project folder -> official-layout flat safetensors + hyperparameter JSON."""
    cfg = E2EConfig.from_json(os.path.join(model_dir, 'config.json'))
    sd = {k: v.to(torch.float32) for k, v in load_safetensors(os.path.join(model_dir, 'model.safetensors')).items()}
    save_safetensors(weights, to_official(sd, cfg), dtype=dtype)
    with open(hyper_path, 'w') as f:
        json.dump(hyper_from_config(cfg), f, indent=2)
        f.write('\n')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--to-official', action='store_true', help='MODEL_DIR WEIGHTS HYPER: write the official layout')
    ap.add_argument('a')
    ap.add_argument('b')
    ap.add_argument('c')
    ap.add_argument('--dtype', default='F32', help='F32 | F16 | BF16 (weights written)')
    ap.add_argument('--tokenizer', default=None, help='tokenizer.json to copy (non-byte vocabularies)')
    a = ap.parse_args()
    if a.to_official:
        to_official_files(a.a, a.b, a.c, a.dtype)
    else:
        cfg = convert(a.a, a.b, a.c, a.dtype, a.tokenizer)
        print(f'wrote {a.c}: L={cfg.num_layers} S={cfg.num_ttt_layers} d={cfg.hidden_size} V={cfg.vocab_size} '
              f'tokenizer={cfg.tokenizer}')


if __name__ == '__main__':
    main()
