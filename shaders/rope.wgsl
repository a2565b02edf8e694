// Rotary position embedding in place, rotate-half form: each row of x holds `segments` vectors of width
// `dim`, each cut into blocks of `headDim`; in a block, channel i pairs with i + headDim/2 and both turn
// by (pos0 + row) * theta^(-2i/headDim). The same kernel ropes attention q/k and fast-weight q/k.
struct Params { dim: u32, headDim: u32, rowStride: u32, segments: u32, segStride: u32, colOff: u32, log2Theta: f32, _p: u32 }
#include "block.wgsl"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

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
  // f32 angle, as engines commonly compute it; the position is exact in f32 up to 2^24.
  let invFreq = exp2(-2.0 * f32(i) / f32(p.headDim) * p.log2Theta);
  let angle = f32(blk.pos0 + row) * invFreq;
  let c = cos(angle);
  let s = sin(angle);
  let base = row * p.rowStride + p.colOff + seg * p.segStride + head * p.headDim + i;
  let x1 = x[base];
  let x2 = x[base + half];
  x[base] = x1 * c - x2 * s;
  x[base + half] = x2 * c + x1 * s;
}
