"""Bundles a finished training run as a demo model: public/models/<name>/ with config.json,
model.safetensors (F16), a model card (README.md) and an entry in public/models/index.json.

    /usr/bin/python3 train/bundle.py runs/lact-4m ttt-lact --description "..."

The card is written from the run's summary.json, its logs and data/manifest.json, so every number in it
is one the run measured. Golden generations are a separate step (train/golden.py).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil

MODES = {'lact': ('ttt', 'LaCT: sliding-window attention plus fast weights (momentum and Muon on)'),
         'swa': ('sliding-window', 'sliding-window attention only (no fast weights)'),
         'full': ('full-attention', 'full causal attention (no window, no fast weights)')}


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('run', help='a finished train/train.py output folder (has summary.json and model/)')
    ap.add_argument('name')
    ap.add_argument('--description', default=None)
    ap.add_argument('--family', default='docs', help='models of one family share sizes; the demo compares within it')
    ap.add_argument('--data', default='data')
    ap.add_argument('--root', default='public/models')
    a = ap.parse_args()

    summary = json.load(open(os.path.join(a.run, 'summary.json')))
    manifest = json.load(open(os.path.join(a.data, 'manifest.json')))
    config = json.load(open(os.path.join(a.run, 'model', 'config.json')))
    vals = [json.loads(line) for line in open(os.path.join(a.run, 'val.jsonl'))]
    mode, what = MODES[summary['mode']]
    dst = os.path.join(a.root, a.name)
    os.makedirs(dst, exist_ok=True)
    for f in ('config.json', 'model.safetensors'):
        shutil.copyfile(os.path.join(a.run, 'model', f), os.path.join(dst, f))
    size = os.path.getsize(os.path.join(dst, 'model.safetensors'))
    args = summary['args']
    debs = ', '.join(f"`{d['package']}` {d['version']}" for d in manifest.get('debs', []) if d['package'] in ('linux-doc-6.1', 'python3.11-doc'))
    val_rows = '\n'.join(f"| {v['step']} | {v['val_bpb']:.4f} |" for v in vals)
    card = f"""# {a.name}

A byte-level {what} language model, trained by this project from scratch on CPU with `train/train.py`.
It is small ({summary['parameters']:,} parameters) and trained on few tokens: it writes text with the
shape of technical documentation, not sense. It exists to show what the engine does with a real trained
model: {mode} memory, its cost per token and its loss along long documents (BENCHMARKS.md).

| | |
| --- | --- |
| architecture | {config['num_hidden_layers']} layers, width {config['hidden_size']}, {config['num_attn_heads']} attention heads, window {config['window_size']}, {'fast-weight chunk ' + str(config['lact_chunk_size']) + ', ' + str(config['num_lact_heads']) + ' fast-weight heads' if config['use_fast_weights'] else 'no fast weights'} |
| tokenizer | bytes (256) + BOS (256) + EOS (257) |
| weights | F16 safetensors, {size:,} bytes, sha256 `{sha256(os.path.join(dst, 'model.safetensors'))}` |
| training data | the reST sources of the Linux 6.1 and Python 3.11 documentation, from Debian's {debs} (`train/data/build_data.py`; {manifest['training_characters']:,} characters) |
| tokens seen | {summary['tokens']:,} ({summary['steps']} steps of {summary['batch']} x {summary['sequence']} tokens) |
| optimiser | AdamW (betas 0.9, 0.95), peak learning rate {args['lr']}, {args['warmup']} warm-up steps, cosine to {args['min_lr_ratio']}x, weight decay {args['wd']}, gradient clip {args['clip']}, seed {args['seed']} |
| final training loss | {summary['final_train_bpb_mean_last_50']} bits/byte (mean of the last 50 steps) |
| final validation loss | {summary['final_val_bpb']} bits/byte (held-out documents of the same sources) |
| training time | {summary['train_minutes']} min on {summary['threads']} CPU thread(s), torch {summary['torch']} |
| command | `/usr/bin/python3 {summary['command']}` |

Validation loss during training (bits/byte):

| step | validation |
| ---: | ---: |
{val_rows}

Bundled with `/usr/bin/python3 train/bundle.py {a.run} {a.name}`.
"""
    with open(os.path.join(dst, 'README.md'), 'w') as f:
        f.write(card)

    index_path = os.path.join(a.root, 'index.json')
    index = json.load(open(index_path)) if os.path.exists(index_path) else []
    entry = next((e for e in index if e.get('name') == a.name), None)
    if entry is None:
        entry = {'name': a.name}
        index.append(entry)
    entry.update({'path': f'models/{a.name}/', 'mode': mode, 'family': a.family,
                  'description': a.description or f'{what}; {summary["parameters"]:,} parameters, trained on {summary["tokens"]:,} bytes of documentation'})
    with open(index_path, 'w') as f:
        json.dump(index, f, indent=2)
        f.write('\n')
    print(f'{dst}: {size:,} bytes; index entry {entry}')


if __name__ == '__main__':
    main()
