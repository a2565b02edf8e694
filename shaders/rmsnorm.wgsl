// RMSNorm over rows: y = x / sqrt(mean(x^2) + eps) * w. A row may hold several vectors ("segments", e.g.
// q and k of a qkv row, each with its own weights at w[seg * n]); input and output may be the same
// buffer: the IN_PLACE variant binds it once (two bindings of one buffer may be assumed not to alias
// by the shader compiler, which breaks in-place updates). The residual add that
// precedes a norm is fused into the producing matmul (beta = 1), so the norm reads the summed stream.
// A norm that comes AFTER a sublayer (TTT-E2E's sandwich norms, h + post_norm(f(h))) adds itself into
// the stream: ACCUMULATE (y += norm(x) w), or RESIDUAL (y = r + norm(x) w, r laid out as y) where the
// stream before the add must be kept (the inner step's backward reads it). RESIDUAL with NEXT also
// norms the new stream for the next sublayer, y2 = norm(y) w2, in the same launch: the two row
// reductions need no other row, so the inner step's post-norm and the next pre-norm are one launch.
// One workgroup per (row, segment); the sum of squares is reduced with subgroup operations where the
// adapter has them, through workgroup memory otherwise.
#if SUBGROUPS
enable subgroups;
#endif
struct Params { n: u32, segments: u32, inStride: u32, inOff: u32, outStride: u32, outOff: u32, segStride: u32, eps: f32 }
#include "block.wgsl"

const WG: u32 = 64u;
#include "reduce.wgsl"
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;
#if IN_PLACE
fn store(i: u32, v: f32) { x[i] = v; }
#else
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
#if ACCUMULATE
fn store(i: u32, v: f32) { y[i] += v; }
#elif RESIDUAL
@group(0) @binding(5) var<storage, read> res: array<f32>;
fn store(i: u32, v: f32) { y[i] = res[i] + v; }
#if NEXT
@group(0) @binding(6) var<storage, read> w2: array<f32>;
@group(0) @binding(7) var<storage, read_write> y2: array<f32>;
#endif
#else
fn store(i: u32, v: f32) { y[i] = v; }
#endif
#endif

// The row total of every lane's v, the same in every lane.
fn rowTotal(lid: u32, sgLane: u32, v: f32) -> f32 {
#if SUBGROUPS
  // Subgroup totals land in their first lane's slot; the layout of subgroups within the workgroup is
  // not specified, so every slot is summed rather than indexing by a computed subgroup id.
  let sv = subgroupAdd(v);
  wgRedF[lid] = select(0.0, sv, sgLane == 0u);
  workgroupBarrier();
  var total = 0.0;
  for (var s = 0u; s < WG; s++) { total += wgRedF[s]; }
  return total;
#else
  return wgSum(lid, v);
#endif
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32
#if SUBGROUPS
  , @builtin(subgroup_invocation_id) sgLane: u32
#endif
) {
#if !SUBGROUPS
  let sgLane = 0u;
#endif
  let row = wid.x;
  let seg = wid.y;
  if (row >= blk.rows) { return; }
  let xin = row * p.inStride + p.inOff + seg * p.segStride;
  let yout = row * p.outStride + p.outOff + seg * p.segStride;
  var ss = 0.0;
  for (var i = lid; i < p.n; i += WG) { let v = x[xin + i]; ss = fma(v, v, ss); }
  let total = rowTotal(lid, sgLane, ss);
  let inv = inverseSqrt(total / f32(p.n) + p.eps);
#if NEXT
  var ss2 = 0.0;
  for (var i = lid; i < p.n; i += WG) {
    store(yout + i, x[xin + i] * inv * w[seg * p.n + i]);
    let v = y[yout + i];
    ss2 = fma(v, v, ss2);
  }
  // Each lane reads back only the elements it stored. The barrier keeps a lane from overwriting its
  // reduction slot while another still reads the first total.
  workgroupBarrier();
  let inv2 = inverseSqrt(rowTotal(lid, sgLane, ss2) / f32(p.n) + p.eps);
  for (var i = lid; i < p.n; i += WG) { y2[yout + i] = y[yout + i] * inv2 * w2[i]; }
#else
  for (var i = lid; i < p.n; i += WG) { store(yout + i, x[xin + i] * inv * w[seg * p.n + i]); }
#endif
}
