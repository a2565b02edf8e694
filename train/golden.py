"""Golden generations: PyTorch's greedy continuation of fixed prompts for a model folder, which the
engine's tests reproduce token for token (test/engine/golden-generation.test.ts).

    /usr/bin/python3 train/golden.py public/models/ttt-lact [--tokens 48] [--out FILE]

The prompts are fixed text (below): a short one, one in the style of the training data (reST), and one
longer than two fast-weight chunks, so the continuation depends on weights the model learned at test
time. The twin has no incremental decoding: every step reruns the whole sequence from position 0, which
is exactly the function the engine computes one token at a time. Written to <model>/golden.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e.export import load_model as load_e2e  # noqa: E402
from e2e.inner import ttt_forward  # noqa: E402
from lact.export import load_model  # noqa: E402


def last_logits_of(model_dir: str):
    """(model, ids -> the logits after the last id): the whole sequence is rerun from position 0 every
    step. A TTT-E2E model takes its inner steps as it reads: a chunk is learned from once the token after
    it is there, so a step that completes a chunk does not learn from it yet, exactly as the engine."""
    with open(os.path.join(model_dir, 'config.json')) as f:
        e2e = json.load(f).get('model_type') == 'ttt_e2e'
    if e2e:
        model = load_e2e(model_dir, torch.float32).eval()
        return model, lambda seq: ttt_forward(model, torch.tensor(seq)).logits[-1]
    model = load_model(model_dir, torch.float32).eval()
    return model, lambda seq: model(torch.tensor([seq]))[0, -1]

SHORT = 'The '
REST = """Installing the module
=====================

To build the module, run ``make`` in the source directory and then load it with
``modprobe``. The following options are"""
# Longer than two 512-token chunks: plain prose about this project, written for this file.
LONG = ("This document describes how a test-time-training language model keeps its memory. A window of "
        "recent tokens is attended to exactly, and everything older is compressed into fast weights: small "
        "multilayer perceptrons, one per head, that are updated by one step of gradient descent at the end "
        "of every chunk of tokens. ") * 6 + (
        "The update uses momentum and an orthogonalisation step, and the weights are renormalised after "
        "each step so that their scale does not drift. Reading the memory is a forward pass of the fast "
        "weights on the query. The cost of each token is therefore constant, whatever the length of the "
        "context, and the memory that has to be kept is constant too. In the following sections we show ")

PROMPTS = {'short': SHORT, 'rest': REST, 'long': LONG}


@torch.no_grad()
def greedy(last_logits, ids: list[int], n: int) -> tuple[list[int], list[float]]:
    """n greedy tokens after ids; also the margin (top-1 minus top-2 logit) at each step."""
    out, margins = [], []
    seq = list(ids)
    for _ in range(n):
        logits = last_logits(seq).double()
        top = torch.topk(logits, 2)
        out.append(int(top.indices[0]))
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(out[-1])
    return out, margins


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('model')
    ap.add_argument('--tokens', type=int, default=48)
    ap.add_argument('--out', default=None)
    ap.add_argument('--threads', type=int, default=2)
    # The engine's test needs every golden margin above 2·EPS_F32 (test/engine/golden-generation.test.ts): past a
    # near-tie the continuation is decided by rounding, not by the model, so a case ends before its first one.
    ap.add_argument('--min-margin', type=float, default=1e-3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, last_logits = last_logits_of(a.model)
    c = model.config
    cases = []
    for name, text in PROMPTS.items():
        prompt = [c.bos_token_id] + list(text.encode('utf-8'))
        ids, margins = greedy(last_logits, prompt, a.tokens)
        tie = next((i for i, m in enumerate(margins) if m <= a.min_margin), None)
        if tie is not None:
            print(f'{name}: margin {margins[tie]:.5f} at token {tie}: the case ends there ({tie} tokens)', flush=True)
            ids, margins = ids[:tie], margins[:tie]
        cont = bytes(i for i in ids if i < 256).decode('utf-8', errors='replace')
        print(f'{name} ({len(prompt)} prompt tokens, smallest top-1 margin {min(margins):.4f}): {cont!r}', flush=True)
        cases.append({'name': name, 'prompt': prompt, 'greedy': ids, 'margins': [round(m, 5) for m in margins],
                      'text': cont})
    out = a.out or os.path.join(a.model, 'golden.json')
    with open(out, 'w') as f:
        json.dump({'model': os.path.basename(os.path.normpath(a.model)), 'weights': 'as stored (F16), computed in float32',
                   'torch': torch.__version__, 'command': 'train/golden.py ' + ' '.join(sys.argv[1:]),
                   'cases': cases}, f, indent=1)
        f.write('\n')


if __name__ == '__main__':
    main()
