"""Writes the bundled random-weight demo models in public/models/ (deterministic, byte-identical on rerun).

    /usr/bin/python3 train/export_random_models.py            # from the repository root

All three come from the `tiny-all-on` test fixture (test/fixtures/tiny-all-on, made by make_fixtures.py)
and share its weights, exported as F16:

  tiny-random-lact  the fixture itself: TTT (fast weights + a 24-token window)
  tiny-random-swa   the same weights without the fast-weight branch (use_fast_weights: false): the
                    sliding-window baseline, window 24
  tiny-random-full  the same again with window_size: null: the full-attention baseline

Sharing the weights makes the demo's comparison about the architecture only: the three differ in what
they remember, not in their attention or MLP weights. They are plumbing checks, not language models (their
text is noise); the trained `docs-*` models are listed after them in public/models/index.json.
"""
from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from lact import export_model, load_model  # noqa: E402
from make_fixtures import FIXTURE_DIR, with_config  # noqa: E402

ROOT = os.path.dirname(HERE)
MODELS_DIR = os.path.join(ROOT, 'public', 'models')
SOURCE = os.path.join(FIXTURE_DIR, 'tiny-all-on')

# name -> (config changes, what it is, one line for the card)
MODELS = {
    'tiny-random-lact': ({}, 'TTT', 'every LaCT option on (momentum, Muon, low-rank W0/W2 + 0.5 I, learnable TTT '
                         'scale, qkv SiLU, q/k norm, qkv bias), a 24-token attention window, fast-weight chunks of 16 tokens'),
    'tiny-random-swa': (dict(use_fast_weights=False), 'sliding-window attention only',
                        'no fast-weight branch (`use_fast_weights: false`); attention over the last 24 tokens only'),
    'tiny-random-full': (dict(use_fast_weights=False, window_size=None), 'full causal attention',
                         'no fast-weight branch and no window (`use_fast_weights: false`, `window_size: null`): '
                         'every token attends to every earlier one, so its KV cache grows with the context'),
}

CARD = """# {name}

A random-weight {kind} model for the demo: {line}.

Made by `train/export_random_models.py` (run from the repository root with Debian's `/usr/bin/python3`):
the weights of the `tiny-all-on` test fixture (`test/fixtures/tiny-all-on`, random, seed 1001, written by
`train/make_fixtures.py`){changes}, exported as F16. `tiny-random-lact`, `tiny-random-swa` and
`tiny-random-full` share these weights, so they differ only in what they remember.

Dimensions: vocabulary 258 (bytes, BOS 256, EOS 257), hidden size 64, 2 layers, 2 attention heads, MLP
intermediate size 256{fw}. It checks the format and the plumbing end to end; it is not a language model
and its text is noise. The trained models are the `docs-*` family beside it.
"""


def main() -> None:
    base = load_model(SOURCE)
    for name, (changes, kind, line) in MODELS.items():
        model = with_config(base, **changes) if changes else base
        out = os.path.join(MODELS_DIR, name)
        export_model(model, out, 'F16')
        desc = ', '.join(f'`{k}: {"null" if v is None else str(v).lower()}`' for k, v in changes.items())
        card = CARD.format(
            name=name, kind=kind, line=line,
            changes=f' with {desc} (the weights this config lacks are dropped)' if changes else '',
            fw=', fast-weight heads 2 (chunks of 16)' if model.config.use_fast_weights else '',
        )
        with open(os.path.join(out, 'README.md'), 'w') as f:
            f.write(card)
        print('wrote', out)


if __name__ == '__main__':
    main()
