// TTT-E2E rotary position embedding, INTERLEAVED pairs (Meta-Llama layout): in each head of hd channels,
// channels (2i, 2i+1) turn as a complex number by pos·freq_i, freq_i = theta^(-2i/hd), pos = pos0 + row
// (the Block uniform). The INVERSE variant turns by minus the angle: R(-a) = R(a)^T, the backward
// (dx = R^T dy). The angle comes from rope-turns.wgsl (exact reduction, driver-independent sin/cos), so
// it is as accurate at position 1e5 as at 0.
//
// Each row of x holds `segments` vectors of H·hd channels (e.g. q and k), `segStride` floats apart from
// `off`; every segment and head turns alike. One invocation per (row, pair i): the angle is computed
// once and applied to every head of every segment. IN_PLACE binds x once (y = x).
struct Params {
  heads: u32, segments: u32, inStride: u32, inOff: u32,
  outStride: u32, outOff: u32, segStride: u32, _a: u32,
}
#include "block.wgsl"
#include "rope-turns.wgsl"

const HD: u32 = $HD;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
// F = frac(freq_i / 2π)·2^64 per pair i as (high, low) u32 words [HD/2].
@group(0) @binding(2) var<storage, read> turns: array<vec2u>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
#if IN_PLACE
fn store(i: u32, v: vec2f) { x[i] = v.x; x[i + 1u] = v.y; }
#else
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
fn store(i: u32, v: vec2f) { y[i] = v.x; y[i + 1u] = v.y; }
#endif

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let half = HD / 2u;
  let id = gid.x + gid.y * nwg.x * 64u;
  if (id >= blk.rows * half) { return; }
  let row = id / half;
  let i = id % half;
  let cs = ropeCosSin(blk.pos0 + row, turns[i]);
#if INVERSE
  let sn = -cs.y;
#else
  let sn = cs.y;
#endif
  for (var seg = 0u; seg < p.segments; seg++) {
    for (var h = 0u; h < p.heads; h++) {
      let col = seg * p.segStride + h * HD + 2u * i;
      let a = row * p.inStride + p.inOff + col;
      let x0 = x[a];
      let x1 = x[a + 1u];
      store(row * p.outStride + p.outOff + col, vec2f(x0 * cs.x - x1 * sn, x0 * sn + x1 * cs.x));
    }
  }
}
