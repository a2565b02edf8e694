"""Long-context quality in PyTorch: mean loss in bits per byte by position bucket over the evaluation
manuals (data/eval/*.txt), for one or more model folders; and the cross-check against the engine.

    /usr/bin/python3 train/eval_quality.py --models public/models/ttt-lact public/models/ttt-swa \\
        public/models/ttt-full --max-tokens 65536 --out bench-results/quality-pytorch.json
    /usr/bin/python3 train/eval_quality.py --models public/models/ttt-lact --docs sed \\
        --max-tokens 16384 --cross-check sed.nll.f32      # engine's per-position losses (bench/quality.ts --dump)

Each document is BOS + its UTF-8 bytes, run from position 0 in one forward pass (no state is carried
between passes, so a document is one sequence, as the engine sees it). The loss at position p is
-log2 P(token p+1 | tokens 0..p). Buckets: 0-512, 512-1K, 1-2K, ... doubling as far as the documents go.

With --out the file is rewritten (atomically) after every document, and a run started again with the
same arguments skips the (model, document) pairs it already holds: a long evaluation survives the end
of a session in pieces, as long as the file is kept. Other arguments with an existing file are refused.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e.export import load_model as load_e2e  # noqa: E402
from e2e.inner import ttt_forward  # noqa: E402
from lact.export import load_model  # noqa: E402


def is_e2e(model_dir: str) -> bool:
    with open(os.path.join(model_dir, 'config.json')) as f:
        return json.load(f).get('model_type') == 'ttt_e2e'


@torch.no_grad()
def e2e_position_losses(model, ids: list[int], learn: bool) -> np.ndarray:
    """Bits for each predicted position of a TTT-E2E model, its inner steps taken as it reads (the
    engine's rule: chunk c is scored with the weights of the updates before it)."""
    r = ttt_forward(model, torch.tensor(ids, dtype=torch.long), n_inputs=len(ids) - 1,
                    inner_lr=None if learn else 0.0)
    return (r.nll.double() / math.log(2)).numpy()


def bucket_of(p: np.ndarray) -> np.ndarray:
    b = np.zeros_like(p)
    big = p >= 512
    b[big] = np.floor(np.log2(p[big] / 512)).astype(p.dtype) + 1
    return b


def bucket_label(b: int) -> str:
    k = lambda n: f'{n // 1024}K' if n >= 1024 else str(n)  # noqa: E731
    lo = 0 if b == 0 else 512 * 2 ** (b - 1)
    return f'{k(lo)}-{k(512 * 2 ** b)}'


def diff_by_bucket(diff: np.ndarray) -> list[dict]:
    """max and mean of per-position |differences|, by the position buckets of the losses."""
    pb = bucket_of(np.arange(len(diff)))
    return [{'bucket': bucket_label(int(i)), 'max_abs_diff': float(diff[pb == i].max()), 'mean_abs_diff': float(diff[pb == i].mean())}
            for i in np.unique(pb)]


def describe(by_bucket: list[dict]) -> str:
    return ', '.join(f"{x['bucket']} {x['max_abs_diff']:.1e}/{x['mean_abs_diff']:.1e}" for x in by_bucket)


@torch.no_grad()
def position_losses(model, ids: list[int]) -> np.ndarray:
    """Bits for each predicted position: [len(ids) - 1]."""
    x = torch.tensor([ids[:-1]], dtype=torch.long)
    h, _ = model.model(x)
    w = model.output_weight()
    target = torch.tensor(ids[1:], dtype=torch.long)
    out = np.empty(len(ids) - 1, dtype=np.float64)
    step = 16384  # logits a slice at a time: [T, V] for a long document is large
    for s in range(0, len(ids) - 1, step):
        logits = F.linear(h[0, s:s + step], w).double()
        nll = -F.log_softmax(logits, dim=-1).gather(1, target[s:s + step, None])[:, 0]
        out[s:s + step] = (nll / math.log(2)).numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', nargs='+', required=True)
    ap.add_argument('--data', default='data/eval')
    ap.add_argument('--docs', default=None, help='comma-separated manual names (default: all)')
    ap.add_argument('--max-tokens', type=int, default=65536, help='per document; 0 = whole documents')
    ap.add_argument('--full-max-tokens', type=int, default=None, help='cap for full-attention models (cost grows as T^2)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--no-learn', action='store_true', help='TTT-E2E models without their inner steps (inner lr 0); LaCT '
                    'models with their fast weights frozen at the learned initial weights (no chunk updates)')
    ap.add_argument('--out', default=None)
    ap.add_argument('--cross-check', default=None, help="engine's per-position losses (float32 bits) for the one --docs document")
    ap.add_argument('--float64-check', action='store_true',
                    help='with --cross-check (LaCT family): also run the model in float64, and compare both the engine and '
                         'PyTorch float32 with it by position: how much of a difference float32 rounding alone makes')
    a = ap.parse_args()
    if a.float64_check and not a.cross_check:
        sys.exit('--float64-check needs --cross-check')
    torch.set_num_threads(a.threads)

    docs = sorted(f[:-4] for f in os.listdir(a.data) if f.endswith('.txt'))
    if a.docs:
        docs = [d for d in docs if d in a.docs.split(',')]
    command = 'train/eval_quality.py ' + ' '.join(sys.argv[1:])
    done: dict[str, dict] = {}
    if a.out and os.path.exists(a.out) and not a.cross_check:
        prev = json.load(open(a.out))
        if prev.get('command') != command:
            sys.exit(f'{a.out} holds another evaluation ({prev.get("command")}); remove it or use another --out')
        done = {r['model']: r for r in prev['results']}
    results = []

    def write() -> None:
        if not a.out:
            return
        os.makedirs(os.path.dirname(a.out) or '.', exist_ok=True)
        tmp = a.out + '.tmp'
        with open(tmp, 'w') as f:
            json.dump({'command': command, 'results': results}, f, indent=1)
        os.replace(tmp, a.out)

    for mdir in a.models:
        if is_e2e(mdir):
            model = load_e2e(mdir, torch.float32).eval()
            c = model.config
            mode = 'ttt-e2e' if not a.no_learn else 'ttt-e2e-frozen'
        else:
            model = load_model(mdir, torch.float32).eval()
            model.set_attn_impl('blocked')
            c = model.config
            mode = 'full-attention' if c.window_size is None else 'ttt' if c.use_fast_weights else 'sliding-window'
            if a.no_learn and mode == 'ttt':
                model.set_fw_update(False)
                mode = 'ttt-frozen'
        cap = a.max_tokens
        if mode == 'full-attention' and a.full_max_tokens:
            cap = min(cap, a.full_max_tokens) if cap else a.full_max_tokens
        sums: dict[int, float] = {}
        counts: dict[int, int] = {}
        per_doc = {}
        entry = {'model': mdir, 'mode': mode, 'max_tokens': cap, 'buckets': [], 'perDoc': per_doc,
                 'seconds': 0.0, 'source': 'pytorch', 'torch': torch.__version__}
        results.append(entry)
        t0 = time.time() - done.get(mdir, {}).get('seconds', 0.0)
        for d in docs:
            held = done.get(mdir, {}).get('perDoc', {}).get(d)
            if held is not None:  # measured by an earlier piece of this run
                per_doc[d] = held
                for i, (bits_i, n_i) in enumerate(zip(held['bits'], held['counts'])):
                    if n_i:
                        sums[i] = sums.get(i, 0.0) + bits_i * n_i
                        counts[i] = counts.get(i, 0) + n_i
                continue
            data = open(os.path.join(a.data, d + '.txt'), 'rb').read()
            ids = [c.bos_token_id] + list(data)
            if cap:
                ids = ids[:cap + 1]
            td = time.time()
            bits = e2e_position_losses(model, ids, not a.no_learn) if mode.startswith('ttt-e2e') else position_losses(model, ids)
            b = bucket_of(np.arange(len(bits)))
            ds = np.bincount(b, weights=bits)
            dc = np.bincount(b)
            for i in range(len(ds)):
                sums[i] = sums.get(i, 0.0) + float(ds[i])
                counts[i] = counts.get(i, 0) + int(dc[i])
            per_doc[d] = {'tokens': len(bits), 'bits': [float(x / n) if n else 0.0 for x, n in zip(ds, dc)], 'counts': dc.tolist(),
                          'seconds': round(time.time() - td, 1)}
            print(f'{os.path.basename(os.path.normpath(mdir))} {d}: {len(bits)} tokens, {bits.mean():.4f} bits/byte, '
                  f'{len(bits) / (time.time() - td):.0f} tokens/s', flush=True)
            if a.cross_check:
                eng = np.fromfile(a.cross_check, dtype=np.float32).astype(np.float64)
                n = min(len(eng), len(bits))
                diff = np.abs(eng[:n] - bits[:n])
                print(f'cross-check {d} ({n} positions): engine mean {eng[:n].mean():.5f}, PyTorch mean {bits[:n].mean():.5f} '
                      f'bits/byte; per-position |diff| max {diff.max():.2e}, mean {diff.mean():.2e}', flush=True)
                # By position bucket too: an error that grows along the document (a drifting angle, a recurrent
                # state amplifying rounding) hides in the document's max and mean.
                by_bucket = diff_by_bucket(diff)
                print('  |diff| by position (max/mean): ' + describe(by_bucket), flush=True)
                per_doc[d]['cross_check'] = {'positions': n, 'engine_mean': float(eng[:n].mean()), 'pytorch_mean': float(bits[:n].mean()),
                                             'max_abs_diff': float(diff.max()), 'mean_abs_diff': float(diff.mean()),
                                             'by_bucket': by_bucket}
                if a.float64_check:
                    if mode.startswith('ttt-e2e'):
                        sys.exit('--float64-check: LaCT-family models only')
                    m64 = load_model(mdir, torch.float64).eval()
                    m64.set_attn_impl('blocked')
                    m64.set_fw_update(mode != 'ttt-frozen')
                    b64 = position_losses(m64, ids)[:n]
                    vs = {'engine': diff_by_bucket(np.abs(eng[:n] - b64)), 'pytorch_float32': diff_by_bucket(np.abs(bits[:n] - b64))}
                    for k, v in vs.items():
                        print(f'  {k} vs PyTorch float64, |diff| by position (max/mean): ' + describe(v), flush=True)
                    per_doc[d]['cross_check']['float64'] = {'mean': float(b64.mean()), **vs}
            entry['buckets'] = [{'bucket': bucket_label(i), 'tokens': counts[i], 'bits': sums[i] / counts[i]} for i in sorted(sums)]
            entry['seconds'] = round(time.time() - t0, 1)
            write()
        buckets = [{'bucket': bucket_label(i), 'tokens': counts[i], 'bits': sums[i] / counts[i]} for i in sorted(sums)]
        entry['buckets'] = buckets
        entry['seconds'] = round(time.time() - t0, 1)
        write()
        print(f'\n{mdir} ({mode})\n| position | tokens | bits/byte |\n| --- | ---: | ---: |')
        for r in buckets:
            print(f"| {r['bucket']} | {r['tokens']} | {r['bits']:.4f} |")


if __name__ == '__main__':
    main()
