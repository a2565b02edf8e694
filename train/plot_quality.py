"""Plots loss by position bucket from train/eval_quality.py (and bench/quality.ts) JSON results, and
prints the Markdown table for BENCHMARKS.md.

    /usr/bin/python3 train/plot_quality.py bench-results/quality-pytorch.json [engine.json ...] \\
        --png docs/quality.png

Needs Debian's python3-matplotlib (scripts/install-system-deps.sh --torch installs it).
"""
from __future__ import annotations

import argparse
import json
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {'ttt': ('LaCT (TTT)', '#d62728'), 'sliding-window': ('sliding window', '#1f77b4'),
         'full-attention': ('full attention', '#2ca02c')}


def load(paths: list[str]) -> list[dict]:
    out = []
    for p in paths:
        d = json.load(open(p))
        for r in d.get('results', [d]):
            r = dict(r)
            r.setdefault('source', 'pytorch')
            out.append(r)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('results', nargs='+')
    ap.add_argument('--png', default='docs/quality.png')
    ap.add_argument('--window', type=int, default=512)
    ap.add_argument('--train-length', type=int, default=4096)
    a = ap.parse_args()
    results = load(a.results)

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for r in results:
        label, color = STYLE.get(r['mode'], (r['mode'], 'black'))
        engine = r['source'] == 'engine'
        xs = list(range(len(r['buckets'])))
        ax.plot(xs, [b['bits'] for b in r['buckets']], marker='s' if engine else 'o', color=color,
                linestyle=':' if engine else '-', label=f"{label} ({'engine' if engine else 'PyTorch'})")
    longest = max(results, key=lambda r: len(r['buckets']))
    ax.set_xticks(range(len(longest['buckets'])))
    ax.set_xticklabels([b['bucket'] for b in longest['buckets']], rotation=30)
    # bucket index whose lower edge is the window / the training length
    def edge(n: int) -> float:
        import math
        return math.log2(n / 512) + 0.5
    ax.axvline(edge(a.window), color='grey', linestyle='--', linewidth=0.8)
    ax.text(edge(a.window) + 0.05, ax.get_ylim()[1], ' window', va='top', fontsize=8, color='grey')
    ax.axvline(edge(a.train_length), color='grey', linestyle='-.', linewidth=0.8)
    ax.text(edge(a.train_length) + 0.05, ax.get_ylim()[1], ' training length', va='top', fontsize=8, color='grey')
    ax.set_xlabel('position in the document (tokens = bytes)')
    ax.set_ylabel('mean loss (bits per byte)')
    ax.set_title('Loss by position over the GNU Info evaluation manuals')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(a.png) or '.', exist_ok=True)
    fig.savefig(a.png)
    print(f'wrote {a.png}\n')

    labels = [b['bucket'] for b in longest['buckets']]
    head = '| position | ' + ' | '.join(f"{STYLE.get(r['mode'], (r['mode'],))[0]} ({r['source']})" for r in results) + ' |'
    print(head)
    print('| --- |' + ' ---: |' * len(results))
    for i, lab in enumerate(labels):
        cells = []
        for r in results:
            b = r['buckets'][i] if i < len(r['buckets']) else None
            cells.append(f"{b['bits']:.3f}" if b else '')
        print(f'| {lab} | ' + ' | '.join(cells) + ' |')
    print('\ntokens per bucket: ' + ', '.join(f"{b['bucket']}: {b['tokens']}" for b in longest['buckets']))


if __name__ == '__main__':
    main()
