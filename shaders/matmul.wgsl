// Batched strided matmul: C[b, m, n] = alpha * sum_k A[b, m, k] * B[b, n, k] (+ bias[n]) (+ beta * C[b, m, n]).
//
// B is addressed as [N, K] like a PyTorch Linear weight (y = x W^T); any transpose of A, B or C is a choice
// of strides, so the same kernel serves the projections, the fast-weight apply and gradient, and Muon.
// Each invocation keeps a TM x TN tile of C in registers and reads no workgroup memory: barriers are
// very expensive on CPU backends (lavapipe, SwiftShader), while a real GPU may prefer other tile shapes,
// hence TM, TN and the workgroup shape are defines chosen by the caller. Accumulation is always f32; B
// (the weights) may be stored as f32, native f16, or f16 packed two per u32.
#if W_F16
enable f16;
#endif

struct Params {
  M: u32, N: u32, K: u32, flags: u32,
  aOff: u32, aBatch: u32, aRow: u32, aCol: u32,
  bOff: u32, bBatch: u32, bRow: u32, bCol: u32,
  cOff: u32, cBatch: u32, cRow: u32, cCol: u32,
  alpha: f32, beta: f32, biasOff: u32, _pad: u32,
}
#include "block.wgsl"

const FLAG_BIAS: u32 = 1u;      // add bias[biasOff + n]
const FLAG_M_ROWS: u32 = 2u;    // M = block.rows (the block's token count)
const FLAG_LAST_ROW: u32 = 4u;  // read only A's row block.rows - 1 (M must be 1): the LM head of a prefill

const TM: u32 = $TM;
const TN: u32 = $TN;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read> a: array<f32>;
#if W_F16
@group(0) @binding(3) var<storage, read> b: array<f16>;
fn loadB(i: u32) -> f32 { return f32(b[i]); }
#elif W_PACKED
@group(0) @binding(3) var<storage, read> b: array<u32>;
fn loadB(i: u32) -> f32 { return unpack2x16float(b[i >> 1u])[i & 1u]; }
#else
@group(0) @binding(3) var<storage, read> b: array<f32>;
fn loadB(i: u32) -> f32 { return b[i]; }
#endif
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;

@compute @workgroup_size($WGX, $WGY, 1)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  var M = p.M;
  if ((p.flags & FLAG_M_ROWS) != 0u) { M = blk.rows; }
  var aOff = p.aOff;
  if ((p.flags & FLAG_LAST_ROW) != 0u) { aOff += (blk.rows - 1u) * p.aRow; }
  let n0 = gid.x * TN;
  let m0 = gid.y * TM;
  let batch = gid.z;
  if (m0 >= M || n0 >= p.N) { return; }

  var acc: array<f32, TM * TN>;
  var arow: array<u32, TM>;
  var brow: array<u32, TN>;
  for (var i = 0u; i < TM; i++) { arow[i] = aOff + batch * p.aBatch + min(m0 + i, M - 1u) * p.aRow; }
  for (var j = 0u; j < TN; j++) { brow[j] = p.bOff + batch * p.bBatch + min(n0 + j, p.N - 1u) * p.bRow; }
  var av: array<f32, TM>;
  var bv: array<f32, TN>;
  for (var k = 0u; k < p.K; k++) {
    for (var i = 0u; i < TM; i++) { av[i] = a[arow[i] + k * p.aCol]; }
    for (var j = 0u; j < TN; j++) { bv[j] = loadB(brow[j] + k * p.bCol); }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) { acc[i * TN + j] = fma(av[i], bv[j], acc[i * TN + j]); }
    }
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + i;
    if (m >= M) { break; }
    for (var j = 0u; j < TN; j++) {
      let n = n0 + j;
      if (n >= p.N) { break; }
      let ci = p.cOff + batch * p.cBatch + m * p.cRow + n * p.cCol;
      var v = p.alpha * acc[i * TN + j];
      if ((p.flags & FLAG_BIAS) != 0u) { v += bias[p.biasOff + n]; }
      if (p.beta != 0.0) { v += p.beta * c[ci]; }
      c[ci] = v;
    }
  }
}
