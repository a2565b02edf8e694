"""What every training script shares: the learning-rate schedule, the resume rule, the data's identity,
validation loss by position, and the model card's record of a run.

Schedule: warm-up, then constant ("stable"), then a linear decay to min_lr_ratio over the last
decay_frac of the steps (warmup-stable-decay). A run may be extended (a larger --tokens) while it is
still in its stable phase, since until then the schedule it followed is the longer run's too; every
other hyperparameter of a resumed run must equal the checkpoint's, or the run is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from typing import Any, Dict, Iterable, List, Sequence

import numpy as np

# Arguments that do not change what a run computes: they may differ between the sessions of one run.
SESSION_ONLY = frozenset({'out', 'data', 'threads', 'max_minutes', 'ckpt_every', 'val_every', 'export_now', 'name'})


def lr_at(step: int, total: int, peak: float, warmup: int, decay_frac: float, min_ratio: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    decay_start = decay_start_of(total, decay_frac)
    if step < decay_start:
        return peak
    p = (step - decay_start) / max(1, total - decay_start)
    return peak * (1.0 - (1.0 - min_ratio) * min(1.0, p))


def decay_start_of(total: int, decay_frac: float) -> int:
    return int(math.floor(total * (1.0 - decay_frac)))


def data_identity(data_dir: str) -> Dict[str, Any]:
    """The sha256 of the training and validation streams, from the build's manifest when it has them
    (checked against the files' sizes), else hashed here."""
    out: Dict[str, Any] = {}
    manifest = os.path.join(data_dir, 'manifest.json')
    listed: Dict[str, Any] = {}
    if os.path.exists(manifest):
        with open(manifest) as f:
            m = json.load(f)
        listed = {k: v for k, v in (m.get('outputs') or {}).items()} if isinstance(m.get('outputs'), dict) else {}
    for name in ('train.u16', 'val.u16'):
        path = os.path.join(data_dir, name)
        entry = listed.get(name)
        if isinstance(entry, dict) and 'sha256' in entry and entry.get('bytes', os.path.getsize(path)) == os.path.getsize(path):
            out[name] = entry['sha256']
        else:
            h = hashlib.sha256()
            with open(path, 'rb') as f:
                for block in iter(lambda: f.read(1 << 22), b''):
                    h.update(block)
            out[name] = h.hexdigest()
    return out


def check_resume(saved: Dict[str, Any], now: Dict[str, Any], saved_data: Dict[str, Any], data: Dict[str, Any],
                 step: int, decay_frac: float, steps_of) -> None:
    """Refuse a resumed run whose hyperparameters or data differ from the checkpoint's. `steps_of(args)`
    gives a run's total steps; a larger total is accepted only while `step` is before the saved run's
    decay began."""
    diff = sorted(k for k in set(saved) | set(now)
                  if k not in SESSION_ONLY and k != 'tokens' and saved.get(k) != now.get(k))
    if diff:
        shown = ', '.join(f'{k}: {saved.get(k)!r} -> {now.get(k)!r}' for k in diff)
        raise SystemExit(f'the checkpoint was written by a run with other hyperparameters ({shown}); '
                         'use another --out, or the same arguments')
    if saved_data != data:
        raise SystemExit(f'the checkpoint was trained on other data ({saved_data}) than {data}; rebuild the '
                         'data it was trained on or use another --out')
    old_total, new_total = steps_of(saved), steps_of(now)
    if new_total != old_total:
        if new_total < old_total:
            raise SystemExit(f'--tokens shrinks the run from {old_total} to {new_total} steps: refused')
        if step >= decay_start_of(old_total, decay_frac):
            raise SystemExit(f'the run is already in its learning-rate decay (step {step}, decay from '
                             f'{decay_start_of(old_total, decay_frac)}): it cannot be extended')


def position_buckets(seq: int, window: int) -> List[List[int]]:
    """[start, end) buckets of position for validation: inside the window, up to 4 windows, beyond."""
    edges = [0, window, min(4 * window, seq)]
    if 4 * window < seq:
        edges.append(seq)
    return [[a, b] for a, b in zip(edges, edges[1:]) if b > a]


def bucket_means(nll: np.ndarray, buckets: Sequence[Sequence[int]]) -> Dict[str, float]:
    """nll [n, seq] in nats -> mean bits/byte per bucket name 'a-b'."""
    return {f'{a}-{b}': round(float(nll[:, a:b].mean()) / math.log(2), 5) for a, b in buckets}


def environment() -> Dict[str, Any]:
    import torch
    return {'torch': torch.__version__, 'python': platform.python_version(), 'machine': platform.machine(),
            'cpus': os.cpu_count()}


def read_jsonl(path: str) -> List[Dict[str, Any]]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def sessions_record(path: str, event: Dict[str, Any]) -> None:
    """Append one line per training session (start, resume, stop, finish) with its command."""
    rec = dict(event, time=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), command=' '.join(sys.argv))
    with open(path, 'a') as f:
        f.write(json.dumps(rec) + '\n')


def jsonable(d: Dict[str, Any]) -> Dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def mean(xs: Iterable[float]) -> float:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else float('nan')


class Run:
    """A run's checkpoint (OUT/ckpt.pt, written atomically) and its sessions log (OUT/sessions.jsonl).

    `Run.open` resumes from the checkpoint when there is one (refusing other hyperparameters or data, see
    check_resume), or starts a new run; with `export_now` a checkpoint must exist and its token budget is
    the run's."""

    def __init__(self, out: str, args: Dict[str, Any], data: Dict[str, Any], steps_of):
        self.ckpt = os.path.join(out, 'ckpt.pt')
        self.sessions = os.path.join(out, 'sessions.jsonl')
        self.args, self.data, self.steps_of = args, data, steps_of
        self.total_steps = steps_of(args)
        self.step, self.elapsed = 0, 0.0
        self.parameters = 0

    @classmethod
    def open(cls, out: str, args: Dict[str, Any], data: Dict[str, Any], steps_of, model, opt, what: str, order) -> 'Run':
        import torch
        run = cls(out, args, data, steps_of)
        run.parameters = sum(p.numel() for p in model.parameters())
        start_message = (f'{what}: {run.parameters:,} parameters, {run.total_steps} steps of {args["batch"]}x{args["seq"]} '
                         f'tokens; {len(order.pieces.starts)} pieces ({order.pieces.targets_per_epoch:,} targets) per epoch')
        export_now = bool(args.get('export_now'))
        if os.path.exists(run.ckpt):
            st = torch.load(run.ckpt, weights_only=False)
            if export_now:
                run.args = dict(args, tokens=st['args']['tokens'])
                run.total_steps = steps_of(run.args)
            check_resume(st['args'], run.args, st['data'], data, st['step'], args['decay_frac'], steps_of)
            model.load_state_dict(st['model'])
            opt.load_state_dict(st['opt'])
            run.step, run.elapsed = st['step'], st['elapsed']
            print(f'resumed at step {run.step}/{run.total_steps} ({run.elapsed / 60:.1f} min so far)', flush=True)
            sessions_record(run.sessions, {'event': 'resume', 'step': run.step, 'total_steps': run.total_steps})
        elif export_now:
            raise SystemExit(f'--export-now: there is no checkpoint in {out}')
        else:
            print(start_message, flush=True)
            sessions_record(run.sessions, {'event': 'start', 'step': 0, 'total_steps': run.total_steps})
        return run

    def lr(self, step: int) -> float:
        a = self.args
        return lr_at(step, self.total_steps, a['lr'], a['warmup'], a['decay_frac'], a['min_lr_ratio'])

    def logs(self):
        """OUT/log.jsonl (a line per step) and OUT/val.jsonl (a line per validation), appended to."""
        out = os.path.dirname(self.ckpt)
        return open(os.path.join(out, 'log.jsonl'), 'a'), open(os.path.join(out, 'val.jsonl'), 'a')

    def after_step(self, rec: Dict[str, Any], validate, model, opt, a, session_start: float, logs) -> bool:
        """After step self.step: its log line, validation every --val-every steps, the checkpoint every
        --ckpt-every; True when the session's time is up (checkpointed)."""
        step, (log, vlog) = self.step, logs
        log.write(json.dumps(rec) + '\n')
        log.flush()
        if step % 10 == 0 or step == 1:
            print(json.dumps(rec), flush=True)
        if step % a.val_every == 0 or step == self.total_steps:
            v = validate()
            vlog.write(json.dumps({'step': step, 'tokens': step * a.seq * a.batch, **v}) + '\n')
            vlog.flush()
            print(f'step {step}: validation {v["val_bpb"]:.4f} bits/byte {v["val_bpb_by_position"]}', flush=True)
        if step % a.ckpt_every == 0 or step == self.total_steps:
            self.save(model, opt)
        return self.stop_if_out_of_time(model, opt, session_start, a.max_minutes)

    def finish(self, a, model, export, order, record: Dict[str, Any], shown: Sequence[str]) -> None:
        """The export (F16) with the whole run's record in OUT/summary.json and in the weights' metadata."""
        out = os.path.dirname(self.ckpt)
        last = read_jsonl(os.path.join(out, 'log.jsonl'))[-50:]
        summary = jsonable({
            **record, 'name': a.name or os.path.basename(os.path.normpath(out)), 'parameters': self.parameters,
            'steps': self.step, 'planned_steps': self.total_steps, 'complete': self.step >= self.total_steps,
            'tokens': self.step * a.seq * a.batch, 'sequence': a.seq, 'batch': a.batch,
            'pieces_per_epoch': len(order.pieces.starts), 'epochs': round(order.epoch_of(self.step), 4),
            'final_train_bpb_mean_last_50': round(mean(r['bpb'] for r in last), 4),
            'val_history': read_jsonl(os.path.join(out, 'val.jsonl')), 'train_minutes': round(self.elapsed / 60, 1),
            'threads': a.threads, 'environment': environment(), 'data': self.data, 'args': self.args,
            'sessions': read_jsonl(self.sessions),
        })
        export(model, os.path.join(out, 'model'), 'F16', metadata={'ttt_web_training': json.dumps(summary)})
        with open(os.path.join(out, 'summary.json'), 'w') as f:
            json.dump(summary, f, indent=2)
        sessions_record(self.sessions, {'event': 'export', 'step': self.step})
        print(json.dumps({k: summary[k] for k in ('name', 'parameters', 'steps', 'tokens', *shown, 'train_minutes')}), flush=True)

    def save(self, model, opt) -> None:
        import torch
        tmp = self.ckpt + '.tmp'
        torch.save({'model': model.state_dict(), 'opt': opt.state_dict(), 'step': self.step, 'elapsed': self.elapsed,
                    'args': self.args, 'data': self.data}, tmp)
        os.replace(tmp, self.ckpt)  # never a half-written checkpoint

    def stop_if_out_of_time(self, model, opt, session_start: float, max_minutes: float) -> bool:
        """After a step: past --max-minutes (and not finished), checkpoint, log the stop and say so."""
        if not max_minutes or time.time() - session_start <= max_minutes * 60 or self.step >= self.total_steps:
            return False
        self.save(model, opt)
        sessions_record(self.sessions, {'event': 'stop', 'step': self.step, 'elapsed_min': round(self.elapsed / 60, 2)})
        print(f'stopping after {max_minutes} min at step {self.step}; run again to resume', flush=True)
        return True


def training_data(data_dir: str, seq: int, batch: int, seed: int, val_pieces: int):
    """The training stream's seeded order of whole pieces, the fixed validation pieces, and the data's identity."""
    import numpy as np
    from batches import PieceOrder, validation_pieces
    train = np.asarray(np.memmap(os.path.join(data_dir, 'train.u16'), dtype='<u2', mode='r'))
    val_stream = np.asarray(np.memmap(os.path.join(data_dir, 'val.u16'), dtype='<u2', mode='r'))
    return train, PieceOrder(train, seq + 1, batch, seed), validation_pieces(val_stream, seq + 1, val_pieces, seed), data_identity(data_dir)
