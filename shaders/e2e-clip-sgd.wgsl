// The TTT-E2E inner update (CPU twin: clipAndStep in src/reference/e2e/update.ts): ONE global L2 norm
// over every gradient tensor (all S blocks' W1, W2, W3), then plain SGD in place,
//   θ ← θ − η · c · g,   c = max_norm / ||g|| when max_norm > 0 and ||g|| ≥ max_norm, else 1,
// with nothing read back: the norm goes from PARTIALS (per tensor, a fixed number of workgroups, each a
// grid-stride sum of squares into its own slot) to NORM (one workgroup over every slot, in slot order)
// to STEP (per tensor, reading the factor η·c that NORM wrote), then RECORD logs it. Every sum has a
// fixed order, so the norm is the same on every run. Each entry point is its own #if section (see
// fast-weights.wgsl).
//
// FUSED does all four in ONE launch of one workgroup, for a single tensor (every block's θ packed in one
// buffer) small enough that one workgroup's grid-stride walks cost less than three more launches (FUSED_MAX
// in src/gpu/ops/e2e-clip-sgd.ts): the models' θ (0.1-0.3M floats) is read twice and written once by 256
// invocations.
//
// stats = [Σ g², ||g||, c, η·c]

#if PARTIALS
const WG: u32 = 64u;
#include "reduce.wgsl"
struct Params { n: u32, off: u32, slot: u32, _a: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(64)
fn partials_tensor(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let stride = nwg.x * WG;
  var acc = 0.0;
  for (var i = wid.x * WG + lid; i < p.n; i += stride) {
    let v = g[p.off + i];
    acc = fma(v, v, acc);
  }
  let total = wgSum(lid, acc);
  if (lid == 0u) { partials[p.slot + wid.x] = total; }
}
#endif

#if NORM
const WG: u32 = 256u;
#include "reduce.wgsl"
struct Params { count: u32, lr: f32, maxNorm: f32, _a: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> stats: array<f32>;

@compute @workgroup_size(256)
fn norm(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < p.count; i += WG) { acc += partials[i]; }
  let ss = wgSum(lid, acc);
  if (lid == 0u) {
    let n = sqrt(ss);
    // A zero gradient (n = 0) never clips, so no 0/0.
    let c = select(1.0, p.maxNorm / n, p.maxNorm > 0.0 && n >= p.maxNorm);
    stats[0] = ss;
    stats[1] = n;
    stats[2] = c;
    stats[3] = p.lr * c;
  }
}
#endif

#if STEP
struct Params { n: u32, thetaOff: u32, gradOff: u32, _a: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> stats: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> theta: array<f32>;

@compute @workgroup_size(64)
fn step(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.n) { return; }
  theta[p.thetaOff + i] -= stats[3] * g[p.gradOff + i];
}
#endif

#if RECORD
// The update's log for the engine's stats (read back after a feed, never by the step): chunk c's record
// goes to slot c mod slots, c = pos0 / B of the update's own block uniform (its chunk's start).
#include "block.wgsl"
struct Params { B: u32, slots: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
// [#valid targets, each row's share of the mean chunk loss] (shaders/e2e-cross-entropy.wgsl)
@group(0) @binding(2) var<storage, read> loss: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;  // [Σ g², ||g||, c, η·c]
@group(0) @binding(4) var<storage, read_write> log: array<f32>;  // [slots, 5]
#include "chunk-loss.wgsl"

@compute @workgroup_size(1)
fn record() {
  let s = 5u * ((blk.pos0 / p.B) % p.slots);
  log[s] = chunkLoss(p.B);
  log[s + 1u] = loss[0];
  log[s + 2u] = stats[1];
  log[s + 3u] = stats[2];
  // The loss after the step, until record_after writes it: a quiet NaN (not measured). WGSL refuses NaN
  // as a constant expression; p._a is 0 and not constant.
  log[s + 4u] = bitcast<f32>(0x7fc00000u + p._a);
}

// After the step and a second forward of the chunk with the new weights: its loss then.
@compute @workgroup_size(1)
fn record_after() {
  log[5u * ((blk.pos0 / p.B) % p.slots) + 4u] = chunkLoss(p.B);
}
#endif

#if FUSED
const WG: u32 = 256u;
#include "reduce.wgsl"
#include "block.wgsl"
// slots = 0: no log (the op was made without a record).
struct Params { n: u32, thetaOff: u32, gradOff: u32, B: u32, lr: f32, maxNorm: f32, slots: u32, _a: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> theta: array<f32>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read> loss: array<f32>;
@group(0) @binding(6) var<storage, read_write> log: array<f32>;
#include "chunk-loss.wgsl"

@compute @workgroup_size(256)
fn clip_step(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < p.n; i += WG) {
    let v = g[p.gradOff + i];
    acc = fma(v, v, acc);
  }
  let ss = wgSum(lid, acc);
  let n = sqrt(ss);
  let c = select(1.0, p.maxNorm / n, p.maxNorm > 0.0 && n >= p.maxNorm);
  let f = p.lr * c;
  for (var i = lid; i < p.n; i += WG) { theta[p.thetaOff + i] -= f * g[p.gradOff + i]; }
  if (lid == 0u) {
    stats[0] = ss;
    stats[1] = n;
    stats[2] = c;
    stats[3] = f;
    if (p.slots > 0u) {
      let s = 5u * ((blk.pos0 / p.B) % p.slots);
      log[s] = chunkLoss(p.B);
      log[s + 1u] = loss[0];
      log[s + 2u] = n;
      log[s + 3u] = c;
      log[s + 4u] = bitcast<f32>(0x7fc00000u + p._a);
    }
  }
}
#endif
