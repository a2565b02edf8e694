"""Plots a benchmark suite result (bench/suite.ts JSON): prefill throughput, decode latency and GPU memory
against context for every contender, and the kernels' GFLOP/s against the best matmul.

    /usr/bin/python3 train/plot_bench.py bench/results/suite-lavapipe-2026-11-23.json --png out.png

`npm run bench` calls it after writing the JSON. Needs Debian's python3-matplotlib
(scripts/install-system-deps.sh --torch installs it).
"""
from __future__ import annotations

import argparse
import json

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    'ttt': ('TTT (LaCT), ttt-web', '#d62728', 'o-'),
    'sliding-window': ('sliding window, ttt-web', '#1f77b4', 's-'),
    'full-attention': ('full attention, ttt-web', '#2ca02c', '^-'),
    'ort-shared': ('full attention, onnxruntime-web (shared-buffer graph)', '#17becf', 's--'),
    'ort-fused': ('full attention, onnxruntime-web (fused graph)', '#9467bd', 'v--'),
    'ort-plain': ('full attention, onnxruntime-web (plain graph)', '#8c564b', 'x--'),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument('result')
    ap.add_argument('--png', required=True)
    args = ap.parse_args()
    r = json.load(open(args.result))
    names = list(dict.fromkeys(row['contender'] for row in r['rows']))
    fig, grid = plt.subplots(2, 2, figsize=(12, 9))
    axes = grid.flatten()

    def series(name: str, key) -> tuple[list[int], list[float]]:
        rows = sorted((x for x in r['rows'] if x['contender'] == name), key=lambda x: x['context'])
        return [x['context'] for x in rows], [key(x) for x in rows]

    plots = [
        ('prefill tokens/s (higher is better)', lambda x: x['prefillTokensPerSecond'], 'log'),
        ('decode ms/token, median (lower is better)', lambda x: x['decodeMs']['median'], 'log'),
        ('GPU MiB held (lower is better)', lambda x: x['gpuBytes'] / 2**20, 'log'),
    ]
    for ax, (title, key, yscale) in zip(axes, plots):
        for name in names:
            label, color, fmt = STYLE.get(name, (name, None, 'o-'))
            xs, ys = series(name, key)
            ax.plot(xs, ys, fmt, color=color, label=label, markersize=4)
        ax.set_xscale('log', base=2)
        ax.set_yscale(yscale)
        ax.set_xticks(r['contexts'])
        ax.set_xticklabels([f'{c // 1024}K' if c >= 1024 else str(c) for c in r['contexts']])
        ax.set_xlabel('context (tokens)')
        ax.set_title(title, fontsize=10)
        ax.grid(True, which='both', alpha=0.3)
    axes[0].legend(fontsize=7, loc='best')

    if r.get('kernels'):
        ax = axes[3]
        rows = r['kernels']['rows']
        best = r['kernels']['bestMatmulGflops']
        labels, vals = [], []
        for k in rows:
            if k['kernel'] == 'matmul':
                continue
            labels.append(k['kernel'].split(' (')[0] if not k['kernel'].startswith('attention') else k['kernel'].replace('attention, ', 'attention\n'))
            vals.append(k['gflops'])
        ax.barh(range(len(vals)), vals, color='#7f7f7f')
        ax.axvline(best, color='#d62728', linestyle='--', label=f'best matmul {best:.2f}')
        ax.set_yticks(range(len(vals)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel('GFLOP/s')
        ax.set_title('kernels', fontsize=10)
        ax.legend(fontsize=7)
    else:
        axes[3].axis('off')

    device = r['device'].split(';')[0]
    fig.suptitle(f"{device} - {r['date'][:10]} - {r['weights']} weights", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f'wrote {args.png}')


if __name__ == '__main__':
    main()
