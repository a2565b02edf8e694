// The SwiGLU gate of the block MLP: s[r, i] = silu(gu[r, i]) * gu[r, I + i], where gu holds the gate and
// up projections side by side (one matmul against the concatenated [2I, D] weight).
struct Params { I: u32, _a: u32, _b: u32, _c: u32 }
#include "block.wgsl"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read> gu: array<f32>;
@group(0) @binding(3) var<storage, read_write> s: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * 64u;
  if (id >= blk.rows * p.I) { return; }
  let r = id / p.I;
  let i = id % p.I;
  let g = gu[r * 2u * p.I + i];
  s[id] = g / (1.0 + exp(-g)) * gu[r * 2u * p.I + p.I + i];
}
