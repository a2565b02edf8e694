"""Training sequences that never cross a document boundary, in one order shared by every family.

A token stream (data/*.u16) is documents of BOS + bytes + EOS. Each document is cut into consecutive
pieces of `length` tokens, the first starting at its BOS; piece k starts at token k*(length-1) of the
document, so the last target of one piece is the first input of the next and no target is skipped.
Only whole pieces are kept: a shorter tail (and a document shorter than `length`) is dropped, so a
model never attends, or carries fast weights, from one document into another, and no padding or loss
mask is needed (every family sees exactly the same targets).

The order is a permutation of all pieces seeded by (seed, epoch); step s of a run with batch b reads
pieces s*b ... s*b+b-1 of that endless sequence of epochs. It depends on nothing but the stream, the
length, the seed and the step, so a resumed run reads what an uninterrupted one would, and two
families given the same length, batch and seed read the same tokens in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np

BOS, EOS = 256, 257


def document_spans(stream: np.ndarray) -> np.ndarray:
    """[n, 2] (start, end) of each document: start at its BOS, end one past its EOS."""
    starts = np.flatnonzero(stream == BOS)
    if len(starts) == 0 or starts[0] != 0:
        raise ValueError('the stream does not start with BOS: not a BOS + bytes + EOS document stream')
    ends = np.append(starts[1:], len(stream))
    if np.any(stream[ends - 1] != EOS):
        bad = int(np.flatnonzero(stream[ends - 1] != EOS)[0])
        raise ValueError(f'document {bad} (tokens {starts[bad]}..{ends[bad]}) does not end with EOS')
    return np.stack([starts, ends], 1)


@dataclass
class Pieces:
    """The whole pieces of `length` tokens of a stream: `starts[i]` is where piece i begins."""
    starts: np.ndarray
    length: int
    documents: int
    documents_used: int
    tokens_in_stream: int

    @property
    def targets_per_epoch(self) -> int:
        return len(self.starts) * (self.length - 1)


def pieces_of(stream: np.ndarray, length: int) -> Pieces:
    if length < 2:
        raise ValueError(f'a piece holds at least 2 tokens, got {length}')
    spans = document_spans(stream)
    stride = length - 1
    starts: List[np.ndarray] = []
    used = 0
    for s, e in spans:
        n = (int(e - s) - 1) // stride  # whole pieces: s + k*stride + length <= e
        if n > 0:
            starts.append(s + stride * np.arange(n, dtype=np.int64))
            used += 1
    if not starts:
        raise ValueError(f'no document holds {length} tokens')
    return Pieces(np.concatenate(starts), length, len(spans), used, len(stream))


class PieceOrder:
    """Batches of pieces: step -> [batch, length] int64, the same for every run with these arguments."""

    def __init__(self, stream: np.ndarray, length: int, batch: int, seed: int):
        self.stream, self.batch, self.seed = stream, batch, seed
        self.pieces = pieces_of(stream, length)
        self._epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.pieces.starts))
            self._epoch = epoch
        return self._perm

    def indices(self, step: int) -> List[int]:
        n = len(self.pieces.starts)
        out = []
        for j in range(step * self.batch, (step + 1) * self.batch):
            out.append(int(self._order(j // n)[j % n]))
        return out

    def starts(self, step: int) -> List[int]:
        return [int(self.pieces.starts[i]) for i in self.indices(step)]

    def batch_at(self, step: int) -> np.ndarray:
        L = self.pieces.length
        return np.stack([self.stream[s:s + L].astype(np.int64) for s in self.starts(step)])

    def epoch_of(self, step: int) -> float:
        return step * self.batch / len(self.pieces.starts)


def validation_pieces(stream: np.ndarray, length: int, count: int, seed: int) -> np.ndarray:
    """A fixed set of `count` whole pieces of the validation stream (the first `count` of a seeded
    permutation), [count, length]; fewer if the stream has fewer."""
    p = pieces_of(stream, length)
    idx = np.random.default_rng([seed, 7]).permutation(len(p.starts))[:count]
    return np.stack([stream[int(p.starts[i]):int(p.starts[i]) + length].astype(np.int64) for i in idx])
