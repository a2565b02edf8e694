// Backward of RMSNorm y = x · r · g per row, r = (mean(x²) + eps)^(-1/2), x [rows, n], g [n] (CPU twin:
// rmsnormBackward in src/reference/e2e/backward.ts):
//   dx_i = r g_i dy_i − (r³ / n) x_i Σ_j dy_j g_j x_j          (DX: one workgroup per row)
//   dg_i = Σ_rows dy_i x_i r                                   (DGAIN: one invocation per column)
// DX also stores each row's r for DGAIN, so the gain gradient needs no second row reduction. Both
// may add into their output instead of overwriting it (the residual stream's gradient; a gain shared
// by several calls). Each entry point is its own #if section (see fast-weights.wgsl for why).
// DX with THEN goes on down the stream in the same launch: the row of dx it just stored is the dy of a
// second norm (x2, gain2; rows of n, no gain gradient), whose dx2 it stores too. TTT-E2E's inner step
// chains a pre-norm's backward (added into the stream's gradient) into the post-norm's below it.
#include "block.wgsl"

const WG: u32 = 64u;
const FLAG_BLOCK_ROWS: u32 = 1u;  // the row count is the block's (blk.rows), not p.rows
const FLAG_ACCUMULATE: u32 = 2u;  // dx += ... (DX) / dgain += ... (DGAIN)

struct Params {
  n: u32, rows: u32, flags: u32, eps: f32,
  xStride: u32, xOff: u32, dyStride: u32, dyOff: u32,
  dxStride: u32, dxOff: u32, _a: u32, _b: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;

fn rowCount() -> u32 {
  if ((p.flags & FLAG_BLOCK_ROWS) != 0u) { return blk.rows; }
  return p.rows;
}

#if DX
#include "reduce.wgsl"
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> gain: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
@group(0) @binding(6) var<storage, read_write> rstd: array<f32>;
#if THEN
@group(0) @binding(7) var<storage, read> x2: array<f32>;
@group(0) @binding(8) var<storage, read> gain2: array<f32>;
@group(0) @binding(9) var<storage, read_write> dx2: array<f32>;
#endif

@compute @workgroup_size(64)
fn dx_rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= rowCount()) { return; }
  let xo = row * p.xStride + p.xOff;
  let dyo = row * p.dyStride + p.dyOff;
  let dxo = row * p.dxStride + p.dxOff;
  var acc = vec2f(0.0);  // (Σ x², Σ dy g x)
  for (var i = lid; i < p.n; i += WG) {
    let v = x[xo + i];
    acc = fma(vec2f(v, dy[dyo + i] * gain[i]), vec2f(v), acc);
  }
  let tot = wgSum2f(lid, acc);
  let r = inverseSqrt(tot.x / f32(p.n) + p.eps);
  let c = r * r * r * tot.y / f32(p.n);
  let accumulate = (p.flags & FLAG_ACCUMULATE) != 0u;
  for (var i = lid; i < p.n; i += WG) {
    var v = r * gain[i] * dy[dyo + i] - c * x[xo + i];
    if (accumulate) { v += dx[dxo + i]; }
    dx[dxo + i] = v;
  }
  if (lid == 0u) { rstd[row] = r; }
#if THEN
  // Each lane reads back only the dx it stored; the barrier keeps a lane from overwriting its
  // reduction slot while another still reads the first totals.
  let o2 = row * p.n;
  var acc2 = vec2f(0.0);
  for (var i = lid; i < p.n; i += WG) {
    let v = x2[o2 + i];
    acc2 = fma(vec2f(v, dx[dxo + i] * gain2[i]), vec2f(v), acc2);
  }
  workgroupBarrier();
  let tot2 = wgSum2f(lid, acc2);
  let r2 = inverseSqrt(tot2.x / f32(p.n) + p.eps);
  let c2 = r2 * r2 * r2 * tot2.y / f32(p.n);
  for (var i = lid; i < p.n; i += WG) { dx2[o2 + i] = r2 * gain2[i] * dx[dxo + i] - c2 * x2[o2 + i]; }
#endif
}
#endif

#if DGAIN
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgain: array<f32>;

// Rows in order, so the sum is the same on every device.
@compute @workgroup_size(64)
fn dgain_cols(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= p.n) { return; }
  let rows = rowCount();
  var acc = 0.0;
  for (var t = 0u; t < rows; t++) {
    acc = fma(dy[t * p.dyStride + p.dyOff + i] * x[t * p.xStride + p.xOff + i], rstd[t], acc);
  }
  if ((p.flags & FLAG_ACCUMULATE) != 0u) { acc += dgain[i]; }
  dgain[i] = acc;
}
#endif
