"""Checks of the training recipe (batches.py, recipe.py): plain script, ends with "N passed, N failed".

    python3 train/test_recipe.py
"""
from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recipe  # noqa: E402
from batches import BOS, EOS, PieceOrder, document_spans, pieces_of, validation_pieces  # noqa: E402
from checks import Checks  # noqa: E402

checks = Checks()


def stream(lengths, seed=0):
    g = np.random.default_rng(seed)
    parts = [np.concatenate([[BOS], g.integers(0, 256, n), [EOS]]) for n in lengths]
    return np.concatenate(parts).astype(np.uint16)


@checks.test
def pieces_never_cross_a_document():
    s = stream([10, 300, 49, 1000, 3])
    p = pieces_of(s, 50)
    spans = document_spans(s)
    for st in p.starts:
        doc = np.searchsorted(spans[:, 0], st, side='right') - 1
        assert spans[doc, 0] <= st and st + 50 <= spans[doc, 1], (st, spans[doc])
    # consecutive pieces of a document share one token (the last target is the next first input)
    assert p.documents_used == 3 and p.documents == 5  # 302, 51 and 1002 tokens hold a piece of 50; 12 and 5 do not
    assert int(p.starts[1] - p.starts[0]) == 49


@checks.test
def order_depends_only_on_seed_and_step_and_covers_an_epoch():
    s = stream([500] * 8)
    a, b = PieceOrder(s, 33, 3, 7), PieceOrder(s, 33, 3, 7)
    n = len(a.pieces.starts)
    seen = [i for step in range(n // 3) for i in a.indices(step)]
    assert len(set(seen)) == len(seen)  # no piece twice within an epoch
    assert all(np.array_equal(a.batch_at(k), b.batch_at(k)) for k in (0, 5, 40))
    assert not np.array_equal(PieceOrder(s, 33, 3, 8).batch_at(0), a.batch_at(0))


@checks.test
def validation_pieces_are_fixed():
    s = stream([400] * 5, seed=3)
    assert np.array_equal(validation_pieces(s, 65, 4, 1), validation_pieces(s, 65, 4, 1))


@checks.test
def a_stream_that_is_not_documents_is_refused():
    for bad in (np.array([1, 2, EOS], np.uint16), np.array([BOS, 1, 2], np.uint16)):
        try:
            document_spans(bad)
        except ValueError:
            continue
        raise AssertionError('accepted a broken stream')


@checks.test
def warmup_stable_decay():
    lr = [recipe.lr_at(s, 100, 1.0, 10, 0.2, 0.1) for s in range(100)]
    assert lr[0] == 0.1 and lr[9] == 1.0 and lr[50] == 1.0 and lr[79] == 1.0
    assert abs(lr[99] - (1 - 0.9 * 19 / 20)) < 1e-12 and lr[90] < lr[80]


@checks.test
def resume_refuses_other_hyperparameters_and_data_and_allows_extension_before_decay():
    steps_of = lambda a: int(a['tokens'])  # noqa: E731
    saved = {'tokens': 100, 'lr': 1e-3, 'seq': 2048, 'threads': 1, 'max_minutes': 5}
    data = {'train.u16': 'x'}
    recipe.check_resume(saved, dict(saved, threads=2, max_minutes=0), data, data, 50, 0.2, steps_of)  # session-only args
    recipe.check_resume(saved, dict(saved, tokens=200), data, data, 79, 0.2, steps_of)  # extended before the decay
    for now, d, step, why in [(dict(saved, lr=2e-3), data, 10, 'other hyperparameters'),
                              (dict(saved, seq=1024), data, 10, 'other hyperparameters'),
                              (saved, {'train.u16': 'y'}, 10, 'other data'),
                              (dict(saved, tokens=200), data, 80, 'decay'),
                              (dict(saved, tokens=50), data, 10, 'shrinks')]:
        try:
            recipe.check_resume(saved, now, d, data if d is data else data, step, 0.2, steps_of) if d is data else \
                recipe.check_resume(saved, now, data, d, step, 0.2, steps_of)
        except SystemExit as e:
            assert why in str(e), (why, str(e))
            continue
        raise AssertionError(f'accepted: {why}')


if __name__ == '__main__':
    sys.exit(1 if checks.run_all() else 0)
