"""Issue 19's table and plot: loss by position for the models of one family, from the engine's quality
results (bench/quality-family.sh writes OUT/<set>-<model>.json), one table and one plot per evaluation set.

    python3 train/plot_family.py OUT --png docs/quality-{set}.png [--window 256] [--train-length 2048]

Prints Markdown for BENCHMARKS.md: bits/byte by position bucket for every model, the mean over positions
>= 4x the window, and each model's ratio to sliding window there. Needs matplotlib.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os

LABELS = {  # file suffix -> (label, color, dash)
    'e2e': ('TTT-E2E', '#d62728', '-'),
    'e2e-frozen': ('TTT-E2E frozen (no inner steps)', '#d62728', ':'),
    'lact': ('LaCT', '#9467bd', '-'),
    'lact-detach': ('LaCT, no gradient from its branch into q/k/v', '#9467bd', '--'),
    'swa': ('sliding window', '#1f77b4', '-'),
    'swa-learning': ('sliding window, learning while reading', '#1f77b4', '--'),
    'full': ('full attention', '#2ca02c', '-'),
    'e2e-swa': ("sliding window, TTT-E2E's architecture", '#ff7f0e', '-'),
}


def load(out: str):
    sets: dict[str, dict[str, dict]] = {}
    for path in sorted(glob.glob(os.path.join(out, '*.json'))):
        name = os.path.basename(path)[:-5]
        s, _, model = name.partition('-')
        if model in LABELS:
            sets.setdefault(s, {})[model] = json.load(open(path))
    return sets


def past_mean(r: dict, start: int) -> tuple[float, int] | None:
    """Mean bits over positions >= start from the buckets (bucket edges are powers of two from 512)."""
    tot = n = 0
    for b in r['buckets']:
        lo = bucket_lo(b['bucket'])
        if lo >= start:
            tot += b['bits'] * b['tokens']
            n += b['tokens']
    return (tot / n, n) if n else None


def bucket_lo(label: str) -> int:
    lo = label.split('-')[0]
    return int(lo[:-1]) * 1024 if lo.endswith('K') else int(lo)


def range_bits(r: dict, lo: int, hi: int | None) -> tuple[float, int] | None:
    for x in r.get('ranges', []):
        if x['from'] == lo and x['to'] == hi and x['tokens']:
            return x['bits'], x['tokens']
    return None


def print_ranges(runs: dict, models: list[str]) -> None:
    """The ranges the targets name (bench/quality.ts --ranges), each model's ratio to the named baseline."""
    spans = sorted({(x['from'], x['to']) for r in runs.values() for x in r.get('ranges', [])},
                   key=lambda t: (t[0], t[1] or 1 << 60))
    if not spans:
        return
    print('\n| positions | ' + ' | '.join(LABELS[m][0] for m in models) + ' |')
    print('| --- |' + ' ---: |' * len(models))
    for lo, hi in spans:
        # Inside full attention's reach the targets compare with it; past 4W, with sliding window.
        base_name = 'full' if hi is not None and 'full' in runs else 'swa'
        base = range_bits(runs[base_name], lo, hi) if base_name in runs else None
        cells = []
        for m in models:
            v = range_bits(runs[m], lo, hi)
            cells.append('' if v is None else f'{v[0]:.3f}' + (f' ({v[0] / base[0]:.3f}x)' if base and m != base_name else ''))
        label = f'{lo:,}-{hi:,}' if hi is not None else f'{lo:,}-end'
        print(f'| {label} (x {LABELS[base_name][0]}) | ' + ' | '.join(cells) + ' |')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('out')
    ap.add_argument('--png', default='docs/quality-{set}.png')
    ap.add_argument('--window', type=int, default=256)
    ap.add_argument('--train-length', type=int, default=2048)
    a = ap.parse_args()
    past = 4 * a.window
    for s, runs in load(a.out).items():
        models = [m for m in LABELS if m in runs]
        longest = max(runs.values(), key=lambda r: len(r['buckets']))
        labels = [b['bucket'] for b in longest['buckets']]
        print(f'\n### {s}\n')
        print('| position | ' + ' | '.join(LABELS[m][0] for m in models) + ' | positions |')
        print('| --- |' + ' ---: |' * (len(models) + 1))
        for i, lab in enumerate(labels):
            cells = []
            for m in models:
                b = next((x for x in runs[m]['buckets'] if x['bucket'] == lab), None)
                cells.append(f"{b['bits']:.3f}" if b else '')
            print(f'| {lab} | ' + ' | '.join(cells) + f" | {longest['buckets'][i]['tokens']:,} |")
        base = past_mean(runs['swa'], past) if 'swa' in runs else None
        row = []
        for m in models:
            pm = past_mean(runs[m], past)
            row.append('' if pm is None else f'{pm[0]:.3f}' + (f' ({pm[0] / base[0]:.3f}x)' if base else ''))
        print(f'| >= {past:,} (x sliding window) | ' + ' | '.join(row) + ' | |')
        print_ranges(runs, models)
        try:
            import matplotlib
            matplotlib.use('Agg')
            import matplotlib.pyplot as plt
        except ImportError:
            print('(matplotlib missing: no plot)')
            continue
        fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
        for m in models:
            label, color, dash = LABELS[m]
            xs = [labels.index(b['bucket']) for b in runs[m]['buckets']]
            ax.plot(xs, [b['bits'] for b in runs[m]['buckets']], marker='o', color=color, linestyle=dash, label=label)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=30)
        for x, what in [(a.window, 'window'), (past, '4x window'), (a.train_length, 'training length')]:
            e = math.log2(x / 512) + 0.5 if x >= 512 else x / 512 - 0.5
            ax.axvline(e, color='grey', linestyle='--', linewidth=0.8)
            ax.text(e + 0.05, ax.get_ylim()[1], f' {what}', va='top', fontsize=8, color='grey')
        ax.set_xlabel('position in the document (tokens = bytes)')
        ax.set_ylabel('mean loss (bits per byte), engine')
        ax.set_title(f'Loss by position, {s} evaluation set')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        png = a.png.format(set=s)
        os.makedirs(os.path.dirname(png) or '.', exist_ok=True)
        fig.savefig(png)
        print(f'\nwrote {png}')


if __name__ == '__main__':
    main()
