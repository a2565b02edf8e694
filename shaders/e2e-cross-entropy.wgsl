// The TTT-E2E chunk loss and its gradient w.r.t. the logits (CPU twin: crossEntropyBackward in
// src/reference/e2e/backward.ts), for B rows over a vocabulary of V columns:
//
//   nll[r]     = logsumexp(logits[r, :]) - logits[r, target[r]]          (every row, BOS targets too)
//   valid[r]   = target[r] != BOS,  denom = max(#valid, 1e-10)
//   loss       = sum_r valid[r] nll[r] / denom                           (an all-BOS chunk: 0, no NaN)
//   dlogits[r] = (softmax(logits[r, :]) - onehot(target[r])) * valid[r] / denom
//
// loss = [#valid, share_0 .. share_{B-1}], share_r = valid[r] nll[r] / denom: the chunk's loss is the
// sum of the shares, which its readers take in row order (shaders/e2e-clip-sgd.wgsl), so no launch here
// needs every row's nll.
//
// The vocabulary may arrive in column tiles (the caller computes logits tile by tile, so a 128K
// vocabulary never needs a [B, V] buffer): STATS runs once per tile and folds the tile into a running
// (max, sum of exp(x - max)) per row, FINISH turns those into nll, loss and each row's gradient weight,
// then GRAD runs once per tile on the (recomputed) tile. When the logits are one tile, ROW does all
// three in one launch: a workgroup per row, each counting the chunk's valid targets itself (B reads).
// Inside a launch a row's columns are read in a loop by 64 lanes with the same online max/sum-exp, so
// any V works in 64-thread workgroups; the lanes' pairs are merged by a fixed halving tree
// (shaders/common/reduce-lse.wgsl).
//
// Each entry point is its own #if section (one module per entry point; see fast-weights.wgsl for why).
// stats[4r .. 4r + 3] = (running max m, sum of exp(x - m), the target's logit, gradient weight).
#include "block.wgsl"

const WG: u32 = 64u;
// The running max before any logit: the lowest finite f32, so exp(LOWEST - x) underflows to exactly 0
// and a lane that saw no column contributes (LOWEST, 0), which merges away.
const LOWEST: f32 = -3.4028234e38;
const FLAG_BLOCK_ROWS: u32 = 1u;  // the row count is the block's (blk.rows), not p.rows

struct Params {
  rows: u32,
  flags: u32,
  bos: u32,    // 0xffffffff: every target counts
  ld: u32,     // row stride of the logits (tile) buffer, in elements
  v0: u32,     // this tile's first vocabulary column
  width: u32,  // this tile's columns
  first: u32,  // 1 on the first tile of a chunk: start the running stats afresh
  targetOff: u32,  // row r's target is targets[targetOff + r]
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;

fn rowCount() -> u32 {
  if ((p.flags & FLAG_BLOCK_ROWS) != 0u) { return blk.rows; }
  return p.rows;
}

#if ROW_LSE
// (max, Σ exp(x − max)) of the tile's row at `base`, over the workgroup: the lanes read its columns in
// turn with an online max/sum-exp, then merge in a fixed tree. Its includer declares `logits`.
#include "reduce.wgsl"
#include "reduce-lse.wgsl"
fn rowLse(base: u32, lid: u32) -> vec2f {
  // One exp per logit on either branch: a new max rescales the sum instead of adding exp(x - m).
  var acc = vec2f(LOWEST, 0.0);
  for (var i = lid; i < p.width; i += WG) {
    let x = logits[base + i];
    if (x > acc.x) {
      acc = vec2f(x, fma(acc.y, exp(acc.x - x), 1.0));
    } else {
      acc.y += exp(x - acc.x);
    }
  }
  return wgLse(lid, acc);
}
#endif

#if STATS
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;

// One workgroup per row (folded 2-D when the rows exceed a grid dimension).
@compute @workgroup_size(64)
fn stats_tile(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * nwg.x;
  if (r >= rowCount()) { return; }
  let base = r * p.ld;
  var tot = rowLse(base, lid);
  if (lid == 0u) {
    if (p.first == 0u) { tot = lseMerge(vec2f(stats[4u * r], stats[4u * r + 1u]), tot); }
    stats[4u * r] = tot.x;
    stats[4u * r + 1u] = tot.y;
    // The target lies in exactly one tile (targets < V), which records its logit.
    let t = targets[p.targetOff + r];
    if (t >= p.v0 && t - p.v0 < p.width) { stats[4u * r + 2u] = logits[base + t - p.v0]; }
  }
}
#endif

#if FINISH
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> stats: array<f32>;
@group(0) @binding(4) var<storage, read_write> nll: array<f32>;
// [mean loss over valid targets, #valid]
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;

#include "reduce.wgsl"

// One workgroup for the whole chunk.
@compute @workgroup_size(64)
fn finish(@builtin(local_invocation_index) lid: u32) {
  let n = rowCount();
  var acc = vec2f(0.0);
  for (var r = lid; r < n; r += WG) {
    let v = stats[4u * r] + log(stats[4u * r + 1u]) - stats[4u * r + 2u];
    nll[r] = v;
    // select, not a product with 0: a BOS row's nll never reaches the sum, whatever it is.
    if (targets[p.targetOff + r] != p.bos) { acc += vec2f(v, 1.0); }
  }
  let tot = wgSum2f(lid, acc);
  let denom = max(tot.y, 1e-10);
  if (lid == 0u) { loss[0] = tot.y; }
  let w = 1.0 / denom;
  for (var r = lid; r < n; r += WG) {
    let wr = select(0.0, w, targets[p.targetOff + r] != p.bos);
    stats[4u * r + 3u] = wr;
    loss[1u + r] = select(0.0, nll[r] * wr, wr != 0.0);
  }
}
#endif

#if ROW
@group(0) @binding(2) var<storage, read> targets: array<u32>;
// The gradient overwrites the logits (one tile).
@group(0) @binding(3) var<storage, read_write> logits: array<f32>;
@group(0) @binding(4) var<storage, read_write> nll: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss: array<f32>;

// One workgroup per row (folded 2-D when the rows exceed a grid dimension).
@compute @workgroup_size(64)
fn row(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * nwg.x;
  let n = rowCount();
  // Workgroup-uniform, so every lane reaches the reductions' barriers.
  if (r >= n) { return; }
  let base = r * p.ld;
  let t = targets[p.targetOff + r];
  let xt = logits[base + t];
  let tot = rowLse(base, lid);
  var cnt = 0u;
  for (var j = lid; j < n; j += WG) { cnt += select(0u, 1u, targets[p.targetOff + j] != p.bos); }
  let valid = f32(wgSumU(lid, cnt));
  let w = select(0.0, 1.0 / max(valid, 1e-10), t != p.bos);
  let v = tot.x + log(tot.y) - xt;
  if (lid == 0u) {
    nll[r] = v;
    loss[1u + r] = select(0.0, v * w, w != 0.0);
    if (r == 0u) { loss[0] = valid; }
  }
  // Every lane has read the target's logit (above the reductions' barriers) before any lane overwrites it.
  storageBarrier();
  for (var i = lid; i < p.width; i += WG) {
    let at = base + i;
    var d = 0.0;
    if (w != 0.0) {
      var q = exp(logits[at] - tot.x) / tot.y;
      if (i == t) { q -= 1.0; }
      d = q * w;
    }
    logits[at] = d;
  }
}
#endif

#if GRAD
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
#if IN_PLACE
// The gradient overwrites the logits tile (one binding: two of one buffer may not alias).
@group(0) @binding(4) var<storage, read_write> logits: array<f32>;
fn store(i: u32, v: f32) { logits[i] = v; }
#else
@group(0) @binding(4) var<storage, read> logits: array<f32>;
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;
fn store(i: u32, v: f32) { dlogits[i] = v; }
#endif

// x: blocks of 64 columns of the tile, y: rows.
@compute @workgroup_size(64)
fn grad(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let r = wid.y;
  let i = wid.x * WG + lid;
  if (r >= rowCount() || i >= p.width) { return; }
  let w = stats[4u * r + 3u];
  let at = r * p.ld + i;
  var d = 0.0;
  if (w != 0.0) {
    var q = exp(logits[at] - stats[4u * r]) / stats[4u * r + 1u];
    if (p.v0 + i == targets[p.targetOff + r]) { q -= 1.0; }
    d = q * w;
  }
  store(at, d);
}
#endif
