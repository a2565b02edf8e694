// TTT-E2E per-head q/k RMSNorm and its backward: every head's hd channels are normalised on their own,
// y = x · r · g, r = (mean(x^2) + eps)^(-1/2), with ONE gain g [hd] shared by the heads. A row holds
// `segments` vectors of H·hd (e.g. q and k), `segStride` floats apart, segment s with its own gain at
// g[s·hd] (q_norm and k_norm). One invocation per (row, segment, head) for the row-wise parts (hd is a
// head's width: 64 in the official sizes, a short serial loop); rows come from the Block uniform.
//
//   forward:       y = x r g                                  (IN_PLACE: y = x, bound once); with ROPE,
//                  y = RoPE(x r g), the interleaved pairs of e2e-rope.wgsl turned as they are stored (one
//                  launch for what the data path and the inner step's tape did in two)
//   backwardDx:    dx = r g dy - (r^3 / hd) x Σ_j dy_j g_j x_j; also writes r per (row, segment, head); with
//                  ROPE_BACK, dy is the gradient of the roped output and is turned back on load (each pair
//                  by the transposed rotation), which saves the inner step a launch of its own
//   backwardDgain: dg_s[i] = Σ_{rows, heads} dy_i x_i r, one workgroup per (i, segment), its invocations
//                  striding over the rows·H vectors and reduced as a tree (fixed order: deterministic).
//                  Reads the r that backwardDx wrote, so it runs after it.
struct Params {
  heads: u32, segments: u32, segStride: u32, eps: f32,
  xStride: u32, xOff: u32, yStride: u32, yOff: u32,
  dxStride: u32, dxOff: u32, _a: u32, _b: u32,
}
#include "block.wgsl"
#if ROPE
#include "rope-turns.wgsl"
#endif
#if ROPE_BACK
#include "rope-turns.wgsl"
#endif

const HD: u32 = $HD;
const WG: u32 = 64u;
#include "reduce.wgsl"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
// forward: gain, x, y. (Resources share binding numbers across entry points that never use both.)
@group(0) @binding(2) var<storage, read> gain: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
#if IN_PLACE
fn store(i: u32, v: f32) { x[i] = v; }
#else
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
fn store(i: u32, v: f32) { y[i] = v; }
#endif
#if ROPE
// F = frac(freq_i / 2π)·2^64 per pair i [HD/2], as e2e-rope.wgsl reads it; the slot after x (or y).
#if IN_PLACE
@group(0) @binding(4) var<storage, read> turns: array<vec2u>;
#else
@group(0) @binding(5) var<storage, read> turns: array<vec2u>;
#endif
#endif
// backwardDx: gain, x, dy, dx, rstd.
@group(0) @binding(3) var<storage, read> xb: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;
#if ROPE_BACK
@group(0) @binding(7) var<storage, read> turnsB: array<vec2u>;
#endif
// backwardDgain: x, dy, rstd, dgain.
@group(0) @binding(2) var<storage, read> xg: array<f32>;
@group(0) @binding(3) var<storage, read> dyg: array<f32>;
@group(0) @binding(4) var<storage, read> rstdIn: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgain: array<f32>;

// (row, segment, head) of vector `id` = (row·segments + segment)·H + head, and its column in a row.
fn vecCol(id: u32) -> vec2u {
  let h = id % p.heads;
  let seg = (id / p.heads) % p.segments;
  return vec2u(id / (p.heads * p.segments), seg * p.segStride + h * HD);
}

@compute @workgroup_size(64)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * 64u;
  if (id >= blk.rows * p.segments * p.heads) { return; }
  let rc = vecCol(id);
  let xo = rc.x * p.xStride + p.xOff + rc.y;
  let go = ((id / p.heads) % p.segments) * HD;
  var ss = 0.0;
  for (var i = 0u; i < HD; i++) { let v = x[xo + i]; ss += v * v; }
  let r = inverseSqrt(ss / f32(HD) + p.eps);
  let yo = rc.x * p.yStride + p.yOff + rc.y;
#if ROPE
  // Each pair is read before it is stored, so in place is safe within the invocation.
  for (var i = 0u; i < HD / 2u; i++) {
    let cs = ropeCosSin(blk.pos0 + rc.x, turns[i]);
    let x0 = x[xo + 2u * i] * r * gain[go + 2u * i];
    let x1 = x[xo + 2u * i + 1u] * r * gain[go + 2u * i + 1u];
    store(yo + 2u * i, x0 * cs.x - x1 * cs.y);
    store(yo + 2u * i + 1u, x0 * cs.y + x1 * cs.x);
  }
#else
  for (var i = 0u; i < HD; i++) { store(yo + i, x[xo + i] * r * gain[go + i]); }
#endif
}

@compute @workgroup_size(64)
fn backwardDx(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * 64u;
  if (id >= blk.rows * p.segments * p.heads) { return; }
  let rc = vecCol(id);
  let xo = rc.x * p.xStride + p.xOff + rc.y;
  let yo = rc.x * p.yStride + p.yOff + rc.y;
  let go = ((id / p.heads) % p.segments) * HD;
  // The gradient of the norm's output, in registers.
  var g: array<f32, HD>;
#if ROPE_BACK
  for (var i = 0u; i < HD / 2u; i++) {
    let cs = ropeCosSin(blk.pos0 + rc.x, turnsB[i]);
    let d0 = dy[yo + 2u * i];
    let d1 = dy[yo + 2u * i + 1u];
    g[2u * i] = d0 * cs.x + d1 * cs.y;
    g[2u * i + 1u] = d1 * cs.x - d0 * cs.y;
  }
#else
  for (var i = 0u; i < HD; i++) { g[i] = dy[yo + i]; }
#endif
  var ss = 0.0;
  var dot = 0.0;
  for (var i = 0u; i < HD; i++) {
    let v = xb[xo + i];
    ss += v * v;
    dot += g[i] * gain[go + i] * v;
  }
  let r = inverseSqrt(ss / f32(HD) + p.eps);
  let c = r * r * r * dot / f32(HD);
  let o = rc.x * p.dxStride + p.dxOff + rc.y;
  for (var i = 0u; i < HD; i++) { dx[o + i] = r * gain[go + i] * g[i] - c * xb[xo + i]; }
  rstd[id] = r;
}

@compute @workgroup_size(64)
fn backwardDgain(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let i = wid.x;
  let seg = wid.y;
  let n = blk.rows * p.heads;
  var acc = 0.0;
  for (var k = lid; k < n; k += WG) {
    let row = k / p.heads;
    let h = k % p.heads;
    let id = (row * p.segments + seg) * p.heads + h;
    let col = seg * p.segStride + h * HD + i;
    acc += dyg[row * p.yStride + p.yOff + col] * xg[row * p.xStride + p.xOff + col] * rstdIn[id];
  }
  let total = wgSum(lid, acc);
  if (lid == 0u) { dgain[seg * HD + i] = total; }
}
