"""Bundles a train/train_e2e.py run as a demo model: public/models/<name>/ with config.json,
model.safetensors, a model card (README.md) written from the run's summary.json and log.jsonl, and an
entry in public/models/index.json.

    /usr/bin/python3 train/bundle_e2e.py runs/e2e-docs docs-e2e
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bundle import sha256, update_index  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('run')
    ap.add_argument('name')
    ap.add_argument('--family', default='docs-e2e')
    ap.add_argument('--root', default='public/models')
    a = ap.parse_args()
    summary = json.load(open(os.path.join(a.run, 'summary.json')))
    cfg = json.load(open(os.path.join(a.run, 'model', 'config.json')))
    args = summary['args']
    log = [json.loads(line) for line in open(os.path.join(a.run, 'log.jsonl'))]
    out = os.path.join(a.root, a.name)
    os.makedirs(out, exist_ok=True)
    for f in ('config.json', 'model.safetensors'):
        shutil.copyfile(os.path.join(a.run, 'model', f), os.path.join(out, f))
    weights = os.path.join(out, 'model.safetensors')
    last = log[-50:]
    train_bits = sum(r['loss'] for r in last) / len(last) / 0.6931471805599453
    L, S = cfg['num_layers'], cfg['num_ttt_layers']
    card = f"""# {a.name}

A byte-level TTT-E2E language model, trained by this project from scratch on CPU with
`train/train_e2e.py` (the outer loop differentiates through every inner step). It is small
({summary['params']:,} parameters) and trained on few tokens: it writes text with the shape of technical
documentation, not sense. It exists to run a real trained TTT-E2E model in the engine: its top
{'block' if S == 1 else f'{S} blocks'} learn{'s' if S == 1 else ''} by one SGD step on the next-token loss of every
{cfg['mini_batch_size']}-token chunk it reads, on the GPU, in the browser.

| | |
| --- | --- |
| architecture | {L} blocks (the top {S} a TTT block), width {cfg['hidden_size']}, {cfg['num_heads']} heads of {cfg['head_dim']}, MLP widths {cfg['intermediate_size_static_mlp']} (static) and {cfg['intermediate_size_dynamic_mlp']} (dynamic), window {cfg['sliding_window']}, chunk {cfg['mini_batch_size']}, inner rate {cfg['inner_lr']}, clip {cfg['inner_clip_global_norm']} |
| tokenizer | bytes (256) + BOS ({cfg['bos_token_id']}) + EOS ({cfg['eos_token_id']}) |
| weights | F16 safetensors, {os.path.getsize(weights):,} bytes, sha256 `{sha256(weights)}` |
| training data | `data/train.u16` of `train/data/build_data.py` (the Linux 6.1 and Python 3.11 documentation sources, as the `docs-*` models) |
| tokens seen | {summary['tokens_seen']:,} ({summary['steps']} steps of {args['batch']} sequences of {args['chunks']} x {args['chunk']} + 1 tokens) |
| optimiser | AdamW (0.9, 0.95), peak rate {args['lr']}, cosine (a run cut short exports mid-schedule), weight decay 0.1, outer clip 1.0; inner rate ramped {0.1} -> {args['inner_lr']} over {args['inner_warmup']} steps; seed {args['seed']} |
| final training loss | {train_bits:.4f} bits/byte (mean of the last {len(last)} steps) |
| validation | {summary['val_bits_per_byte_with_updates']:.4f} bits/byte learning, {summary['val_bits_per_byte_inner_lr_0']:.4f} frozen (inner rate 0), on {summary['val_sequences']} held-out sequences of {summary['val_tokens_each']} tokens |
| command | `/usr/bin/python3 train/train_e2e.py --out {a.run} --steps {args['steps']} --threads {args['threads']}` |

Bundled with `/usr/bin/python3 train/bundle_e2e.py {a.run} {a.name}`.
"""
    with open(os.path.join(out, 'README.md'), 'w') as f:
        f.write(card)
    update_index(a.root, a.name, {'mode': 'ttt', 'family': a.family,
                                  'description': f"TTT-E2E: its top block's MLP learns by backpropagation every {cfg['mini_batch_size']} bytes it reads; "
                                                 f"{summary['params']:,} parameters, trained on {summary['tokens_seen']:,} bytes of documentation"})
    print(f'wrote {out} and its index entry')


if __name__ == '__main__':
    main()
