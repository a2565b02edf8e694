"""The TTT-E2E inner loop (test-time training) and the outer (meta-learning) training step.

`ttt_forward(model, tokens)` runs a sequence chunk by chunk (chunks of B aligned to position 0):

    h_pre = embedding + the L-S non-TTT blocks over the whole sequence   (never see theta: computed once)
    theta = the checkpoint's dynamic weights (W1, W2, W3 of the S TTT blocks)
    for chunk i = positions [iB, min(iB+B, T)):
        apply:  the S TTT blocks + head on h_pre[chunk] with theta; keys/values of earlier chunks (their
                window, computed with the theta of their own time) are constants, never recomputed
        if the chunk is complete and token iB+B is known (its last target):
            loss_i = sum over targets t_{p+1} != BOS of CE / max(#valid, 1e-10)
            g = d loss_i / d theta          (torch.autograd.grad, theta only; second order if training)
            g = g * max_norm/||g||  if ||g|| >= max_norm   (ONE global norm over all S blocks' W1, W2, W3)
            theta = theta - inner_lr * g    (plain SGD)

This is the official `MetaModel.loss_for_sequence` (train_mode "meta") + `inner_loop_step` with the
optax chain clip_by_global_norm + sgd, and the spec's prefill rule: a prompt of P tokens takes
floor((P-1)/B) updates; a trailing partial chunk (or a complete one whose next token is unknown) is
applied with the latest theta and waits.

`outer_loss` / `train_step`: the training loss of a sequence of nB+1 tokens is the mean of the n chunk
losses (each with its pre-update weights), differentiated through every inner step (create_graph=True):
the gradient reaches theta_0 and every frozen part.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .model import KV, E2EForCausalLM, Theta


def chunk_loss(logits: torch.Tensor, targets: torch.Tensor, bos_token_id: int):
    """Mean CE over targets != BOS, divided by max(#valid, 1e-10) (so an all-BOS chunk gives 0, no NaN).
    Returns (loss, nll [n] of every target, valid mask [n])."""
    lf = logits if logits.dtype == torch.float64 else logits.float()
    nll = -torch.log_softmax(lf, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    valid = (targets != bos_token_id).to(nll.dtype)
    loss = (nll * valid).sum() / torch.clamp(valid.sum(), min=1e-10)
    return loss, nll, valid


def global_norm(grads: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((g * g).sum() for g in grads))


def clip_by_global_norm(grads: Sequence[torch.Tensor], max_norm: float):
    """optax.clip_by_global_norm: scale every tensor by max_norm/||g|| when ||g|| >= max_norm (one norm
    over all of them); max_norm <= 0 disables the clip. Returns (grads, norm (float), scale (float))."""
    norm = global_norm(grads)
    nv = float(norm.detach())
    if max_norm > 0 and nv >= max_norm:
        scale = max_norm / norm  # differentiable (second order through the clip, as in optax)
        return [g * scale for g in grads], nv, float(scale.detach())
    return list(grads), nv, 1.0


def flatten_theta(theta: Sequence[Theta]) -> List[torch.Tensor]:
    return [w for t in theta for w in t]


def unflatten_theta(flat: Sequence[torch.Tensor]) -> List[Theta]:
    return [tuple(flat[i:i + 3]) for i in range(0, len(flat), 3)]  # type: ignore[misc]


def inner_step(loss: torch.Tensor, theta: Sequence[Theta], inner_lr: float, max_norm: float,
               create_graph: bool):
    """One inner SGD step on `theta` from `loss`. Returns (new theta, grad norm before the clip, scale)."""
    flat = flatten_theta(theta)
    grads = torch.autograd.grad(loss, flat, create_graph=create_graph)
    grads, norm, scale = clip_by_global_norm(grads, max_norm)
    new = [w - inner_lr * g for w, g in zip(flat, grads)]
    if not create_graph:
        new = [w.detach().requires_grad_(True) for w in new]
    return unflatten_theta(new), norm, scale


def ttt_chunk(model: E2EForCausalLM, x: torch.Tensor, pos: torch.Tensor, past: Sequence[Optional[KV]],
              theta: Sequence[Theta]):
    """The S TTT blocks and the head on one chunk: x = h_pre rows [n, d] at positions pos, past[j] the
    K/V of block j's earlier positions (constants), theta[j] its dynamic weights.
    Returns (logits [n, V], this chunk's K/V per block, the residual stream after each block)."""
    curs, xs = [], []
    for j, blk in enumerate(model.ttt_blocks):
        x, cur = blk(x, pos, past=past[j], theta=theta[j])
        curs.append(cur)
        xs.append(x)
    return model.head(x), curs, xs


@dataclass
class TTTResult:
    logits: torch.Tensor                 # [n_inputs, V], each chunk with its pre-update theta
    nll: torch.Tensor                    # [len(tokens)-1] NLL of token p+1 at position p (p < n_inputs)
    chunk_losses: List[torch.Tensor]     # loss_i of every chunk that updated, in order
    grad_norms: List[float]              # ||g|| before the clip, per update
    clip_scales: List[float]             # 1.0 where not clipped
    thetas: List[List[Theta]]            # theta after every update (keep_thetas=True)
    theta: List[Theta]                   # the final theta
    h_pre: torch.Tensor                  # [n_inputs, d]: input of the first TTT block
    kv: List[List[KV]] = field(default_factory=list)   # per TTT block: K/V of every chunk, in order
    prefix_kv: List[KV] = field(default_factory=list)  # per non-TTT block: K/V of all positions
    hidden: List[torch.Tensor] = field(default_factory=list)  # residual stream after each block (optional)

    @property
    def n_updates(self) -> int:
        return len(self.chunk_losses)


def ttt_forward(model: E2EForCausalLM, tokens: torch.Tensor, *, n_inputs: Optional[int] = None,
                inner_lr: Optional[float] = None, clip: Optional[float] = None, create_graph: bool = False,
                keep_thetas: bool = False, output_hidden_states: bool = False) -> TTTResult:
    """The chunked inner loop over one sequence `tokens` [T] (int64).

    n_inputs: how many positions to run (default T); tokens after them are targets only (training:
    nB+1 tokens, n_inputs = nB, every chunk updates). Chunk i updates iff it is complete and token
    iB+B is in `tokens`.
    create_graph: training (keep the graph through every inner step, second order); otherwise the
    inner steps run on detached copies of the dynamic weights and the outputs are detached."""
    c = model.config
    T = tokens.shape[0]
    n = T if n_inputs is None else n_inputs
    assert 1 <= n <= T
    lr = c.inner_lr if inner_lr is None else inner_lr
    max_norm = c.inner_clip_global_norm if clip is None else clip
    B, W = c.mini_batch_size, c.sliding_window
    train = create_graph
    blocks = model.ttt_blocks
    L0 = c.first_ttt_layer

    with torch.set_grad_enabled(train):
        pos_all = torch.arange(n)
        h = model.model.embed(tokens[:n])
        hidden = [h] if output_hidden_states else []
        prefix_kv = []
        for i in range(L0):
            h, kv_i = model.model.layers[i](h, pos_all)
            prefix_kv.append(kv_i if train else kv_i.detach())
            if output_hidden_states:
                hidden.append(h)
        h_pre = h if train else h.detach()

    if train:
        theta: List[Theta] = model.initial_theta()
    else:
        theta = [tuple(w.detach().clone().requires_grad_(True) for w in t) for t in model.initial_theta()]

    kv: List[List[KV]] = [[] for _ in blocks]
    logits_parts, losses, norms, scales, thetas = [], [], [], [], []
    hid_parts: List[List[torch.Tensor]] = [[] for _ in blocks]
    for s in range(0, n, B):
        e = min(s + B, n)
        pos = torch.arange(s, e)
        update = bool(blocks) and (e - s == B) and (e < T)
        with torch.set_grad_enabled(train or update):
            past = [KV.cat(kv[j]).last(W - 1) if kv[j] else None for j in range(len(blocks))]
            lg, curs, xs = ttt_chunk(model, h_pre[s:e], pos, past, theta)
            for j in range(len(blocks)):
                kv[j].append(curs[j] if train else curs[j].detach())
                if output_hidden_states:
                    hid_parts[j].append(xs[j] if train else xs[j].detach())
            logits_parts.append(lg if train else lg.detach())
            if update:
                loss, _, _ = chunk_loss(lg, tokens[s + 1:e + 1], c.bos_token_id)
                theta, gn, sc = inner_step(loss, theta, lr, max_norm, create_graph=train)
                losses.append(loss if train else loss.detach())
                norms.append(gn)
                scales.append(sc)
                if keep_thetas:
                    thetas.append([tuple(w.detach().clone() for w in t) for t in theta])

    logits = torch.cat(logits_parts, 0)
    with torch.set_grad_enabled(train):
        m = min(n, T - 1)
        lf = logits[:m] if logits.dtype == torch.float64 else logits[:m].float()
        nll = -torch.log_softmax(lf, -1).gather(-1, tokens[1:m + 1, None]).squeeze(-1)
    if output_hidden_states:
        hidden += [torch.cat(p, 0) for p in hid_parts]
    final = theta if train else [tuple(w.detach() for w in t) for t in theta]
    return TTTResult(logits=logits, nll=nll, chunk_losses=losses, grad_norms=norms, clip_scales=scales,
                     thetas=thetas, theta=final, h_pre=h_pre, kv=kv, prefix_kv=prefix_kv, hidden=hidden)


# --------------------------------------------------------------------------------------------------
# Outer loop (meta-learning)
# --------------------------------------------------------------------------------------------------

def outer_loss(model: E2EForCausalLM, tokens: torch.Tensor, inner_lr: Optional[float] = None,
               clip: Optional[float] = None) -> torch.Tensor:
    """Training loss of one sequence of n*B + 1 tokens: the mean of its n chunk losses, with the graph
    through every inner step (second order, no stop-gradient)."""
    B = model.config.mini_batch_size
    n_in = tokens.shape[0] - 1
    if n_in < B or n_in % B:
        raise ValueError(f'a training sequence holds n*B + 1 tokens (B = {B}), got {tokens.shape[0]}')
    r = ttt_forward(model, tokens, n_inputs=n_in, inner_lr=inner_lr, clip=clip, create_graph=True)
    if not r.chunk_losses:  # no TTT block (num_ttt_layers = 0): the family's sliding-window baseline
        return r.nll.mean()
    return torch.stack(r.chunk_losses).mean()


def inner_lr_schedule(step: int, warmup_steps: int, lr: float = 1.0, ilr_init: float = 0.1) -> float:
    """The official inner-rate ramp: ilr_init -> lr linearly over the first warmup_steps outer steps."""
    if warmup_steps <= 0:
        return lr
    progress = min(1.0, (step + 1) / warmup_steps)
    return ilr_init + (lr - ilr_init) * progress


def make_outer_optimizer(model: E2EForCausalLM, lr: float, weight_decay: float = 0.1):
    """AdamW (0.9, 0.95), weight decay on every parameter (the official settings)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)


def train_step(model: E2EForCausalLM, opt: torch.optim.Optimizer, batch: Sequence[torch.Tensor],
               inner_lr: Optional[float] = None, clip_outer: float = 1.0,
               autocast: Optional[torch.dtype] = None) -> Tuple[float, float]:
    """One outer step on a batch of sequences (each n*B + 1 tokens). Returns (loss, outer grad norm).
    `autocast` (e.g. torch.bfloat16) runs the forward, inner steps included, under CPU autocast; the
    backward runs outside it, as autocast asks."""
    opt.zero_grad(set_to_none=True)
    with torch.autocast('cpu', dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        loss = torch.stack([outer_loss(model, t, inner_lr=inner_lr) for t in batch]).mean()
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_outer)
    opt.step()
    return float(loss.detach()), float(gn)
