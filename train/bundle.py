"""Bundles a finished training run (train/train.py or train/train_e2e.py) as a demo model:
public/models/<name>/ with config.json, model.safetensors (F16), a model card (README.md) and an entry
in public/models/index.json.

    python3 train/bundle.py runs/four/lact w256-lact --family w256 [--description "..."]

The card is written from the run's summary.json (the whole run's record: data, tokens, steps, losses,
every session's command, time) and data/manifest.json, so every number in it is one the run measured.
Golden generations are a separate step (train/golden.py).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil

WHAT = {'lact': ('ttt', 'LaCT: sliding-window attention plus fast weights (momentum and Muon on)'),
        'swa': ('sliding-window', 'sliding-window attention only (no fast weights)'),
        'full': ('full-attention', 'full causal attention (no window, no fast weights)'),
        'e2e': ('ttt', "TTT-E2E: sliding-window attention, and its top block's MLP learns by backpropagation as it reads")}


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def departures(args: dict) -> str:
    """A card row for train.py's pilot flags that change how a run trains (not the function the model
    computes, which config.json holds): empty when the run used none."""
    notes = []
    if args.get('fw_input_grad') == 'off':
        notes.append('`--fw-input-grad off`: q, k, v enter the fast-weight branch detached, so the branch sends '
                     'no gradient into the q/k/v projections it shares with attention (the official LaCT '
                     'training backpropagates through both uses; train/README.md has the pilots)')
    elif args.get('fw_input_grad_scale', 1.0) != 1.0:
        notes.append(f'`--fw-input-grad-scale {args["fw_input_grad_scale"]:g}`: the fast-weight branch sends '
                     f'{args["fw_input_grad_scale"]:g} times its gradient into the q/k/v projections it shares '
                     'with attention (the official LaCT training sends all of it; train/README.md has the pilots)')
    if args.get('fw_own_qkv'):
        notes.append('`--fw-own-qkv`: the fast-weight branch reads q, k, v from a projection of its own (the '
                     'official LaCT shares attention\'s), `attn.fw_qkv.weight`, config key `fw_own_qkv`')
    if args.get('fw_update') == 'off':
        notes.append('`--fw-update off`: the fast weights never learn (a static MLP branch)')
    if args.get('ttt_scale_init') == 'zero':
        notes.append('`--ttt-scale-init zero`: the fast-weight branch starts switched off')
    return ''.join(f'| training departure | {n} |\n' for n in notes)


def update_index(root: str, name: str, fields: dict) -> dict:
    """public/models/index.json: the entry `name` gets `fields` (made at the end if new; its place and
    other keys, such as `default`, are kept)."""
    index_path = os.path.join(root, 'index.json')
    index = json.load(open(index_path)) if os.path.exists(index_path) else []
    entry = next((e for e in index if e.get('name') == name), None)
    if entry is None:
        entry = {'name': name}
        index.append(entry)
    entry.update({'path': f'models/{name}/', **fields})
    with open(index_path, 'w') as f:
        json.dump(index, f, indent=2)
        f.write('\n')
    return entry


def architecture(cfg: dict) -> str:
    if cfg.get('model_type') == 'ttt_e2e':
        L, S = cfg['num_layers'], cfg['num_ttt_layers']
        if S == 0:
            return (f"{L} blocks (no TTT block), width {cfg['hidden_size']}, {cfg['num_heads']} heads of {cfg['head_dim']}, "
                    f"MLP width {cfg['intermediate_size_static_mlp']}, window {cfg['sliding_window']}, sandwich norms, "
                    "per-head q/k RMSNorm, tied embeddings")
        return (f"{L} blocks (the top {S} a TTT block), width {cfg['hidden_size']}, {cfg['num_heads']} heads of "
                f"{cfg['head_dim']}, MLP widths {cfg['intermediate_size_static_mlp']} (static) and "
                f"{cfg['intermediate_size_dynamic_mlp']} (dynamic), window {cfg['sliding_window']}, chunk "
                f"{cfg['mini_batch_size']}, inner rate {cfg['inner_lr']}, inner clip {cfg['inner_clip_global_norm']}, "
                "per-head q/k RMSNorm, tied embeddings")
    fw = (f"fast-weight chunk {cfg['lact_chunk_size']}, {cfg['num_lact_heads']} fast-weight heads"
          if cfg['use_fast_weights'] else 'no fast weights')
    return (f"{cfg['num_hidden_layers']} layers, width {cfg['hidden_size']}, {cfg['num_attn_heads']} attention heads, "
            f"window {cfg['window_size']}, {fw}, q/k RMSNorm {'on' if cfg.get('attn_qk_norm') else 'off'}")


def bits(v: dict) -> str:
    by = ', '.join(f'{k}: {x:.4f}' for k, x in v['val_bpb_by_position'].items())
    return f"{v['val_bpb']:.4f} bits/byte (by position: {by})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('run', help='a finished run folder (has summary.json and model/)')
    ap.add_argument('name')
    ap.add_argument('--description', default=None)
    ap.add_argument('--family', required=True, help='models of one family share sizes and data; the demo compares within it')
    ap.add_argument('--data', default='data')
    ap.add_argument('--root', default='public/models')
    a = ap.parse_args()

    summary = json.load(open(os.path.join(a.run, 'summary.json')))
    manifest = json.load(open(os.path.join(a.data, 'manifest.json')))
    cfg = json.load(open(os.path.join(a.run, 'model', 'config.json')))
    if summary.get('data', {}).get('train.u16') != manifest['outputs']['train.u16']['sha256']:
        raise SystemExit(f'{a.run} was trained on other data than {a.data}/manifest.json describes')
    mode, what = WHAT[summary['mode']]
    # TTT-E2E's architecture without a TTT block learns nothing as it reads: a sliding-window model.
    no_ttt = summary['mode'] == 'e2e' and cfg.get('num_ttt_layers') == 0
    if no_ttt:
        mode, what = 'sliding-window', "TTT-E2E's architecture without its TTT block: sliding-window attention only, nothing learns as it reads"
    dst = os.path.join(a.root, a.name)
    os.makedirs(dst, exist_ok=True)
    for f in ('config.json', 'model.safetensors'):
        shutil.copyfile(os.path.join(a.run, 'model', f), os.path.join(dst, f))
    weights = os.path.join(dst, 'model.safetensors')
    args = summary['args']
    env = summary['environment']
    sources = manifest['training_sources']
    debs = ', '.join(sorted({f"`{d['package']}` {d['version']}" for d in manifest['debs']
                             if any(d['package'] in (s['package'] if isinstance(s['package'], list) else [s['package']])
                                    for s in sources.values())}))
    data = '; '.join(f"{k}: {s['documents']:,} documents, {s['tokens']:,} tokens" for k, s in sources.items())
    val_rows = '\n'.join(f"| {v['step']} | {v['tokens']:,} | {v['val_bpb']:.4f} | "
                         + ' | '.join(f'{x:.4f}' for x in v['val_bpb_by_position'].values()) + ' |'
                         for v in summary['val_history'])
    buckets = list(summary['val_history'][-1]['val_bpb_by_position']) if summary['val_history'] else []
    commands = '\n'.join(f"- {s['time']} {s['event']} at step {s['step']}: `{s['command']}`" for s in summary['sessions'])
    frozen = (f"\n| validation, inner steps off | {bits(summary['final_val_inner_lr_0'])} |"
              if 'final_val_inner_lr_0' in summary and not no_ttt else '')
    schedule = (f"AdamW (betas 0.9, 0.95), peak learning rate {args['lr']}, {args['warmup']} warm-up steps, constant, "
                f"then linear decay to {args['min_lr_ratio']}x over the last {args['decay_frac']:.0%} of steps, "
                f"weight decay {args['wd']}, gradient clip {args.get('clip', 1.0)}, seed {args['seed']}")
    if summary['mode'] == 'e2e' and not no_ttt:
        schedule += f"; inner rate ramped 0.1 -> {args['inner_lr']} over {args['inner_warmup']} steps, second order through every inner step"
    short = '' if summary['complete'] else (f"\n**This run was cut short**: {summary['steps']} of {summary['planned_steps']} "
                                            "steps (exported with `--export-now`).\n")
    card = f"""# {a.name}

A byte-level language model ({what}), trained by this project from scratch on CPU. It is small
({summary['parameters']:,} parameters, {summary['tokens']:,} training tokens): it writes text with the shape of
technical documentation and Python source, not sense. It is one of the `{a.family}` family, models of
one size trained on the same tokens in the same order (LaCT, TTT-E2E, sliding window, full attention, and
TTT-E2E's architecture without its TTT block), so that their loss along long documents can be compared
(BENCHMARKS.md).
{short}
| | |
| --- | --- |
| architecture | {architecture(cfg)} |
| tokenizer | bytes (256) + BOS ({cfg['bos_token_id']}) + EOS ({cfg['eos_token_id']}) |
| weights | F16 safetensors, {os.path.getsize(weights):,} bytes, sha256 `{sha256(weights)}` |
| training data | `train/data/build_data.py` from Debian's {debs}: {data}; `train.u16` sha256 `{summary['data']['train.u16']}` |
| sequences | whole pieces of one document, {summary['sequence']} + 1 tokens, {summary['pieces_per_epoch']:,} per epoch, seeded order (`train/batches.py`); {summary['epochs']} epochs seen |
| tokens seen | {summary['tokens']:,} ({summary['steps']} steps of {summary['batch']} x {summary['sequence']} tokens) |
| optimiser | {schedule} |
| precision | {'training forward under bf16 CPU autocast (matmuls in bf16); weights, optimizer and validation in fp32' if args.get('precision') == 'bf16' else 'fp32'} |
{departures(args)}| final training loss | {summary['final_train_bpb_mean_last_50']} bits/byte (mean of the last 50 steps) |
| validation | {bits(summary['final_val'])} |{frozen}
| training time | {summary['train_minutes']} min on {summary['threads']} CPU thread(s), torch {env['torch']}, {env['cpus']} CPUs |

Validation ({args['val_pieces']} held-out pieces of the training sources) during training, bits/byte:

| step | tokens | all | {' | '.join(buckets)} |
| ---: | ---: | ---: |{' ---: |' * len(buckets)}
{val_rows}

Sessions of the run:
{commands}

Bundled with `python3 train/bundle.py {a.run} {a.name} --family {a.family}`.
"""
    with open(os.path.join(dst, 'README.md'), 'w') as f:
        f.write(card)

    entry = update_index(a.root, a.name, {'mode': mode, 'family': a.family,
                                          'description': a.description or f'{what}; {summary["parameters"]:,} parameters, trained on {summary["tokens"]:,} bytes'})
    print(f'{dst}: {os.path.getsize(weights):,} bytes; index entry {entry}')


if __name__ == '__main__':
    main()
