// Embedding gather: x[r] = E[token[r]] for the block's rows. An embedding table larger than one storage
// binding is split into row ranges [v0, v1), one launch per part; each launch writes only the rows whose
// token falls in its part.
#if W_F16
enable f16;
#endif
struct Params { D: u32, v0: u32, v1: u32, _p: u32 }
#include "block.wgsl"

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
#if W_F16
@group(0) @binding(3) var<storage, read> e: array<f16>;
fn loadE(i: u32) -> f32 { return f32(e[i]); }
#elif W_PACKED
@group(0) @binding(3) var<storage, read> e: array<u32>;
fn loadE(i: u32) -> f32 { return unpack2x16float(e[i >> 1u])[i & 1u]; }
#else
@group(0) @binding(3) var<storage, read> e: array<f32>;
fn loadE(i: u32) -> f32 { return e[i]; }
#endif
@group(0) @binding(4) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * 64u;
  if (id >= blk.rows * p.D) { return; }
  let r = id / p.D;
  let i = id % p.D;
  let t = tokens[r];
  if (t < p.v0 || t >= p.v1) { return; }
  x[id] = loadE((t - p.v0) * p.D + i);
}
