// Rotary position embedding in place, rotate-half form: each row of x holds `segments` vectors of width
// `dim`, each cut into blocks of `headDim`; in a block, channel i pairs with i + headDim/2 and both turn
// by (pos0 + row) * theta^(-2i/headDim). The same kernel ropes attention q/k and fast-weight q/k.
//
// The angle comes from the turn table (rope-turns.wgsl: exact reduction, the kernel's own sin/cos), not
// from cos/sin of an f32 product pos·freq: that product is off by ~2^-24·pos rad before any driver error
// (2e-3 rad at 32K), and Vulkan promises only 2^-11 absolute for sin/cos of it; on SwiftShader the logits
// moved by 8e-4. The PyTorch twin forms the angle in f64, which the table follows.
struct Params { dim: u32, headDim: u32, rowStride: u32, segments: u32, segStride: u32, colOff: u32, _a: u32, _b: u32 }
#include "block.wgsl"
#include "rope-turns.wgsl"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;
// [headDim / 2]: frac(freq_i / 2π)·2^64 as (high, low) words (src/gpu/ops/rope-turn-table.ts).
@group(0) @binding(3) var<storage, read> turns: array<vec2u>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  // One invocation per (row, segment, pair).
  let half = p.headDim / 2u;
  let pairs = p.dim / 2u;
  let id = gid.x + gid.y * nwg.x * 64u;
  let total = blk.rows * p.segments * pairs;
  if (id >= total) { return; }
  let row = id / (p.segments * pairs);
  let rest = id % (p.segments * pairs);
  let seg = rest / pairs;
  let pr = rest % pairs;
  let head = pr / half;
  let i = pr % half;
  let cs = ropeCosSin(blk.pos0 + row, turns[i]);
  let base = row * p.rowStride + p.colOff + seg * p.segStride + head * p.headDim + i;
  let x1 = x[base];
  let x2 = x[base + half];
  x[base] = x1 * cs.x - x2 * cs.y;
  x[base + half] = x2 * cs.x + x1 * cs.y;
}
