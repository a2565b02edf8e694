// Batched strided matmul: C[b, m, n] = alpha * sum_k A[b, m, k] * B[b, n, k] (+ bias[n]) (+ beta * C[b, m, n]).
//
// B is addressed as [N, K] like a PyTorch Linear weight (y = x W^T); any transpose of A, B or C is a choice
// of strides, so the same kernel serves the projections, the fast-weight apply and gradient, and Muon.
// Accumulation is always f32; B (the weights) may be stored as f32, native f16, or f16 packed two per u32.
//
// A_NORM fuses the RMSNorm that precedes a projection into it (one launch instead of two): row m of A is
// read as x[m, k] * gain[k], and the product is scaled by 1 / sqrt(mean_k x[m, k]^2 + eps), the sum of
// squares gathered from the same loads of A that the product makes (K is the norm's width).
//
// A_RESID (with A_NORM) fuses TTT-E2E's sandwich post-norm and residual add, x += post_norm(s), into the
// projection after it: A is the sublayer's output s, and the row that A_NORM norms is the updated stream
// x'[m, k] = resid[m, k] + postGain[k] * s[m, k] / sqrt(mean_k s[m, k]^2 + eps) (one eps for both norms).
// The post-norm's scale needs all of s's row before the first product, so each shape first makes a pass
// over its rows of s. With FLAG_RESID_WRITE the first column tile also stores x' in residOut, which must not
// be resid: the other tiles of the same launch still read the old stream.
//
// C_GLU_BACK fuses the elementwise step of the SwiGLU backward into the epilogue of dm = dy W2 (C is
// [rows, f], f = N, unbatched): with u, g the forward's gate and up side by side in ug [rows, 2f], each
// (m, n) stores du = dm g silu'(u) over u and dg = dm silu(u) over g, and C gets m = silu(u) g (the
// hidden activation, for dW2); silu'(u) = σ(u) (1 + u (1 − σ(u))), as the CPU twin swigluBackward
// (src/reference/e2e/backward.ts). Each element is one invocation's, so in place is safe.
//
// Three shapes of the same function (src/gpu/kernel-variant.ts picks the family of shapes per adapter):
//  - REGISTER (the CPU-emulator shape, the default): each invocation keeps a TM x TN tile of C in
//    registers and reads no workgroup memory. Barriers are very expensive on CPU backends (lavapipe,
//    SwiftShader), so TM, TN and the workgroup shape are defines chosen by the caller.
//  - TILED (GPU prefill GEMM): a workgroup of 16 x 16 computes a 64 x 64 tile of C, 4 x 4 per invocation
//    at stride 16 (so a warp's reads of the B tile and its writes of C are consecutive), staging 16-deep
//    slices of A and B in workgroup memory; consecutive invocations load consecutive k, as vec4 when
//    A_VEC / B_VEC say the strides allow it.
//  - GEMV (GPU decode, M <= 2): a workgroup of 64 invocations computes 4 columns of C for both rows,
//    the invocations spread across K (coalesced, vec4 where allowed, a packed f16 pair read as both its
//    halves), then reduced through subgroups where the device has them, else a workgroup tree.
#if W_F16
enable f16;
#endif
#if SUBGROUPS
enable subgroups;
#endif

struct Params {
  M: u32, N: u32, K: u32, flags: u32,
  aOff: u32, aBatch: u32, aRow: u32, aCol: u32,
  bOff: u32, bBatch: u32, bRow: u32, bCol: u32,
  cOff: u32, cBatch: u32, cRow: u32, cCol: u32,
  alpha: f32, beta: f32, biasOff: u32, aGlu: u32,
  normEps: f32, gainOff: u32, rRow: u32,
}
#include "block.wgsl"

const FLAG_BIAS: u32 = 1u;      // add bias[biasOff + n]
const FLAG_M_ROWS: u32 = 2u;    // M = block.rows (the block's token count)
const FLAG_LAST_ROW: u32 = 4u;  // read only A's row block.rows - 1 (M must be 1): the LM head of a prefill
const FLAG_RESID_WRITE: u32 = 8u;  // A_RESID: the first column tile stores the updated stream x'

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
// Vector bindings (A_VEC, B_VEC) are chosen by the host only when the k stride is 1 and every offset and
// row stride is a multiple of 4 elements with K a multiple of 4, so element index / 4 is exact.
#if A_VEC
@group(0) @binding(2) var<storage, read> a: array<vec4f>;
#else
@group(0) @binding(2) var<storage, read> a: array<f32>;
#endif
#if W_F16
#if B_VEC
@group(0) @binding(3) var<storage, read> b: array<vec4<f16>>;
fn loadB4(i4: u32) -> vec4f { return vec4f(b[i4]); }
#else
@group(0) @binding(3) var<storage, read> b: array<f16>;
fn loadB(i: u32) -> f32 { return f32(b[i]); }
#endif
#elif W_PACKED
#if B_VEC
@group(0) @binding(3) var<storage, read> b: array<vec2u>;
fn loadB4(i4: u32) -> vec4f { let w = b[i4]; return vec4f(unpack2x16float(w.x), unpack2x16float(w.y)); }
#else
@group(0) @binding(3) var<storage, read> b: array<u32>;
fn loadB(i: u32) -> f32 { return unpack2x16float(b[i >> 1u])[i & 1u]; }
#endif
#else
#if B_VEC
@group(0) @binding(3) var<storage, read> b: array<vec4f>;
fn loadB4(i4: u32) -> vec4f { return b[i4]; }
#else
@group(0) @binding(3) var<storage, read> b: array<f32>;
fn loadB(i: u32) -> f32 { return b[i]; }
#endif
#endif
#if A_GLU
// A_GLU: A holds the gate half of [g | u] rows (the block MLP's gate|up output) and the kernel reads
// silu(g) * u, u p.aGlu elements after g, with swiglu.wgsl's formula: the SwiGLU fused into the down
// projection's loads.
#if A_VEC
fn loadA4(i4: u32) -> vec4f { let g = a[i4]; return g / (1.0 + exp(-g)) * a[i4 + p.aGlu / 4u]; }
#else
fn loadA(i: u32) -> f32 { let g = a[i]; return g / (1.0 + exp(-g)) * a[i + p.aGlu]; }
#endif
#else
#if A_VEC
fn loadA4(i4: u32) -> vec4f { return a[i4]; }
#else
fn loadA(i: u32) -> f32 { return a[i]; }
#endif
#endif
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<f32>;
#if A_NORM
@group(0) @binding(6) var<storage, read> gain: array<f32>;
fn gainAt(k: u32) -> f32 { return gain[p.gainOff + k]; }
fn gain4At(k: u32) -> vec4f {
  let g = p.gainOff + k;
  return vec4f(gain[g], gain[g + 1u], gain[g + 2u], gain[g + 3u]);
}
// The row's scale from its sum of squares.
fn rmsScale(ss: f32) -> f32 { return inverseSqrt(ss / f32(p.K) + p.normEps); }
#endif
#if A_RESID
#if A_VEC
@group(0) @binding(7) var<storage, read> resid: array<vec4f>;
@group(0) @binding(8) var<storage, read_write> residOut: array<vec4f>;
#else
@group(0) @binding(7) var<storage, read> resid: array<f32>;
@group(0) @binding(8) var<storage, read_write> residOut: array<f32>;
#endif
@group(0) @binding(9) var<storage, read> postGain: array<f32>;
fn postGain4At(k: u32) -> vec4f { return vec4f(postGain[k], postGain[k + 1u], postGain[k + 2u], postGain[k + 3u]); }
// Element offset of the stream's row 0 (rows have stride p.rRow, unit k stride).
fn rOffOf() -> u32 {
  if ((p.flags & FLAG_LAST_ROW) != 0u) { return (blk.rows - 1u) * p.rRow; }
  return 0u;
}
fn residWrites(firstColumnTile: bool) -> bool { return firstColumnTile && (p.flags & FLAG_RESID_WRITE) != 0u; }
#endif

fn rowsOf() -> u32 {
  if ((p.flags & FLAG_M_ROWS) != 0u) { return blk.rows; }
  return p.M;
}

fn aOffOf() -> u32 {
  if ((p.flags & FLAG_LAST_ROW) != 0u) { return p.aOff + (blk.rows - 1u) * p.aRow; }
  return p.aOff;
}

#if C_GLU_BACK
@group(0) @binding(6) var<storage, read_write> ug: array<f32>;
#endif

// The epilogue every shape shares: alpha, bias, beta, one store (acc already scaled by A_NORM's row scale).
fn storeC(batch: u32, m: u32, n: u32, acc: f32) {
  let ci = p.cOff + batch * p.cBatch + m * p.cRow + n * p.cCol;
  var v = p.alpha * acc;
  if ((p.flags & FLAG_BIAS) != 0u) { v += bias[p.biasOff + n]; }
  if (p.beta != 0.0) { v += p.beta * c[ci]; }
#if C_GLU_BACK
  let iu = m * 2u * p.N + n;
  let u = ug[iu];
  let g = ug[iu + p.N];
  let sg = 1.0 / (1.0 + exp(-u));
  let su = u * sg;
  ug[iu] = v * g * (sg * (1.0 + u * (1.0 - sg)));
  ug[iu + p.N] = v * su;
  v = su * g;
#endif
  c[ci] = v;
}

#if TILED
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> tileA: array<f32, BK * BM>;  // [k][m]
var<workgroup> tileB: array<f32, BK * BN>;  // [k][n]
#if A_RESID
var<workgroup> postScale: array<f32, BM>;
#endif

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u,
        @builtin(local_invocation_index) li: u32) {
  let M = rowsOf();
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let batch = wid.z;
  if (m0 >= M) { return; }  // workgroup-uniform: the grid may be sized for more rows than this block has
  let aBase = aOffOf() + batch * p.aBatch;
  let bBase = p.bOff + batch * p.bBatch;
  var acc: array<f32, 16>;
#if A_NORM
  // This invocation's share of the sums of squares of the A rows it loads (see the loads below).
  var ss: array<f32, 4>;
#endif
#if A_RESID
  // The post-norm scales of the block's rows: four invocations a row, each summing every fourth k (or
  // vec4), the four shares meeting in tileA.
  {
    let mm = li / 4u;
    let q = li % 4u;
    let m = m0 + mm;
    var s2 = 0.0;
    if (m < M) {
#if A_VEC
      for (var k4 = q; k4 < p.K / 4u; k4 += 4u) { let v = loadA4((aBase + m * p.aRow) / 4u + k4); s2 += dot(v, v); }
#else
      for (var k = q; k < p.K; k += 4u) { let v = loadA(aBase + m * p.aRow + k * p.aCol); s2 = fma(v, v, s2); }
#endif
    }
    tileA[li] = s2;
  }
  workgroupBarrier();
  if (li < BM) { postScale[li] = rmsScale(tileA[4u * li] + tileA[4u * li + 1u] + tileA[4u * li + 2u] + tileA[4u * li + 3u]); }
  workgroupBarrier();
  let rBase = rOffOf();
  let writes = residWrites(wid.x == 0u);
#endif
  for (var k0 = 0u; k0 < p.K; k0 += BK) {
#if A_VEC
    {
      let mm = li / 4u;
      let kq = li % 4u;
      let m = m0 + mm;
      var v = vec4f(0.0);
      if (m < M && k0 + 4u * kq < p.K) {
        v = loadA4((aBase + m * p.aRow + k0) / 4u + kq);
#if A_RESID
        let ri = (rBase + m * p.rRow + k0) / 4u + kq;
        v = resid[ri] + postGain4At(k0 + 4u * kq) * v * postScale[mm];
        if (writes) { residOut[ri] = v; }
#endif
#if A_NORM
        ss[0] += dot(v, v);
        v *= gain4At(k0 + 4u * kq);
#endif
      }
      for (var t = 0u; t < 4u; t++) { tileA[(4u * kq + t) * BM + mm] = v[t]; }
    }
#else
    for (var r = 0u; r < 4u; r++) {
      let e = li + 256u * r;
      let kk = e % BK;
      let mm = e / BK;
      let m = m0 + mm;
      let k = k0 + kk;
      var v = 0.0;
      if (m < M && k < p.K) {
        v = loadA(aBase + m * p.aRow + k * p.aCol);
#if A_RESID
        let ri = rBase + m * p.rRow + k;
        v = fma(postGain[k] * v, postScale[mm], resid[ri]);
        if (writes) { residOut[ri] = v; }
#endif
#if A_NORM
        ss[r] = fma(v, v, ss[r]);
        v *= gainAt(k);
#endif
      }
      tileA[kk * BM + mm] = v;
    }
#endif
#if B_VEC
    {
      let nn = li / 4u;
      let kq = li % 4u;
      let n = n0 + nn;
      var v = vec4f(0.0);
      if (n < p.N && k0 + 4u * kq < p.K) { v = loadB4((bBase + n * p.bRow + k0) / 4u + kq); }
      for (var t = 0u; t < 4u; t++) { tileB[(4u * kq + t) * BN + nn] = v[t]; }
    }
#else
    for (var r = 0u; r < 4u; r++) {
      let e = li + 256u * r;
      let kk = e % BK;
      let nn = e / BK;
      let n = n0 + nn;
      let k = k0 + kk;
      var v = 0.0;
      if (n < p.N && k < p.K) { v = loadB(bBase + n * p.bRow + k * p.bCol); }
      tileB[kk * BN + nn] = v;
    }
#endif
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      var av: array<f32, 4>;
      var bv: array<f32, 4>;
      for (var i = 0u; i < 4u; i++) { av[i] = tileA[kk * BM + lid.y + 16u * i]; }
      for (var j = 0u; j < 4u; j++) { bv[j] = tileB[kk * BN + lid.x + 16u * j]; }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] = fma(av[i], bv[j], acc[i * 4u + j]); }
      }
    }
    workgroupBarrier();
  }
#if A_NORM
  // The shares meet in tileA (free after the loop's last barrier): with vector loads row mm's are at
  // 4 mm + 0..3; with scalar loads, share r of invocation li covers row li / 16 + 16 r.
  var scale: array<f32, 4>;
  for (var r = 0u; r < 4u; r++) { tileA[r * 256u + li] = ss[r]; }
  workgroupBarrier();
  for (var i = 0u; i < 4u; i++) {
    let mm = lid.y + 16u * i;
    var total = 0.0;
#if A_VEC
    for (var q = 0u; q < 4u; q++) { total += tileA[4u * mm + q]; }
#else
    for (var q = 0u; q < 16u; q++) { total += tileA[(mm / 16u) * 256u + 16u * (mm % 16u) + q]; }
#endif
    scale[i] = rmsScale(total);
  }
#endif
  for (var i = 0u; i < 4u; i++) {
    let m = m0 + lid.y + 16u * i;
    if (m >= M) { break; }
    for (var j = 0u; j < 4u; j++) {
      let n = n0 + lid.x + 16u * j;
#if A_NORM
      if (n < p.N) { storeC(batch, m, n, acc[i * 4u + j] * scale[i]); }
#else
      if (n < p.N) { storeC(batch, m, n, acc[i * 4u + j]); }
#endif
    }
  }
}
#elif GEMV
const WG: u32 = 64u;
#include "reduce.wgsl"
#if SUBGROUPS
// Per invocation: [row 0 columns 0..3, row 1 columns 0..3] (the subgroup totals, in their first lanes).
var<workgroup> partial: array<array<vec4f, 2>, WG>;
#if A_NORM
var<workgroup> partialSs: array<vec2f, WG>;
#endif
#endif

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32
#if SUBGROUPS
  , @builtin(subgroup_invocation_id) sgLane: u32
#endif
) {
  let M = rowsOf();
  let n0 = wid.x * 4u;
  let batch = wid.z;
  let aBase = aOffOf() + batch * p.aBatch;
  let bBase = p.bOff + batch * p.bBatch;
  let rows = min(M, 2u);
  var acc: array<vec4f, 2>;
#if A_NORM
  var ss = vec2f(0.0);  // the rows' sums of squares, this invocation's share
#endif
#if A_RESID
  // The rows' post-norm scales, the same in every invocation, before the product's pass.
  var s2 = vec2f(0.0);
  for (var r = 0u; r < rows; r++) {
#if A_VEC
    for (var k4 = li; k4 < p.K / 4u; k4 += WG) { let v = loadA4((aBase + r * p.aRow) / 4u + k4); s2[r] += dot(v, v); }
#else
    for (var k = li; k < p.K; k += WG) { let v = loadA(aBase + r * p.aRow + k * p.aCol); s2[r] = fma(v, v, s2[r]); }
#endif
  }
  let s2Total = wgSum4f(li, vec4f(s2, 0.0, 0.0));
  let postScale = vec2f(rmsScale(s2Total.x), rmsScale(s2Total.y));
  let rBase = rOffOf();
  let writes = residWrites(wid.x == 0u);
#endif
  // Columns past N read the last column (clamped) and are never stored.
  var bRows: array<u32, 4>;
  for (var j = 0u; j < 4u; j++) { bRows[j] = bBase + min(n0 + j, p.N - 1u) * p.bRow; }
#if A_VEC
  // B_VEC is set with A_VEC only (the host asks for both or neither).
  for (var k4 = li; k4 < p.K / 4u; k4 += WG) {
    var bq: array<vec4f, 4>;
    for (var j = 0u; j < 4u; j++) { bq[j] = loadB4(bRows[j] / 4u + k4); }
#if A_NORM
    let g4 = gain4At(4u * k4);
#endif
    for (var r = 0u; r < rows; r++) {
#if A_NORM
      var araw = loadA4((aBase + r * p.aRow) / 4u + k4);
#if A_RESID
      let ri = (rBase + r * p.rRow) / 4u + k4;
      araw = resid[ri] + postGain4At(4u * k4) * araw * postScale[r];
      if (writes) { residOut[ri] = araw; }
#endif
      ss[r] += dot(araw, araw);
      let av = araw * g4;
#else
      let av = loadA4((aBase + r * p.aRow) / 4u + k4);
#endif
      acc[r] += vec4f(dot(av, bq[0]), dot(av, bq[1]), dot(av, bq[2]), dot(av, bq[3]));
    }
  }
#else
  for (var k = li; k < p.K; k += WG) {
    var bk: vec4f;
    for (var j = 0u; j < 4u; j++) { bk[j] = loadB(bRows[j] + k * p.bCol); }
#if A_NORM
    let gk = gainAt(k);
    for (var r = 0u; r < rows; r++) {
      var araw = loadA(aBase + r * p.aRow + k * p.aCol);
#if A_RESID
      let ri = rBase + r * p.rRow + k;
      araw = fma(postGain[k] * araw, postScale[r], resid[ri]);
      if (writes) { residOut[ri] = araw; }
#endif
      ss[r] = fma(araw, araw, ss[r]);
      acc[r] = fma(vec4f(araw * gk), bk, acc[r]);
    }
#else
    for (var r = 0u; r < rows; r++) { acc[r] = fma(vec4f(loadA(aBase + r * p.aRow + k * p.aCol)), bk, acc[r]); }
#endif
  }
#endif
#if SUBGROUPS
  // Subgroup totals land in their first lane's slot; the layout of subgroups within the workgroup is
  // not specified, so every slot is summed rather than indexing by a computed subgroup id.
  let s0 = subgroupAdd(acc[0]);
  let s1 = subgroupAdd(acc[1]);
  partial[li][0] = select(vec4f(0.0), s0, sgLane == 0u);
  partial[li][1] = select(vec4f(0.0), s1, sgLane == 0u);
#if A_NORM
  partialSs[li] = select(vec2f(0.0), subgroupAdd(ss), sgLane == 0u);
#endif
  workgroupBarrier();
  // Eight invocations store: (row, column) = (li / 4, li % 4).
  if (li < 8u) {
    let r = li / 4u;
    let j = li % 4u;
    let n = n0 + j;
    if (r < rows && n < p.N) {
      var total = 0.0;
      for (var s = 0u; s < WG; s++) { total += partial[s][r][j]; }
#if A_NORM
      var ssTotal = 0.0;
      for (var s = 0u; s < WG; s++) { ssTotal += partialSs[s][r]; }
      total *= rmsScale(ssTotal);
#endif
      storeC(batch, r, n, total);
    }
  }
#else
  let t0 = wgSum4f(li, acc[0]);
  var t1 = vec4f(0.0);
  if (rows > 1u) { t1 = wgSum4f(li, acc[1]); }  // rows is uniform: the barriers stay in uniform flow
#if A_NORM
  let ssTotal = wgSum4f(li, vec4f(ss, 0.0, 0.0));
  let scale = vec2f(rmsScale(ssTotal.x), rmsScale(ssTotal.y));
#else
  let scale = vec2f(1.0);
#endif
  if (li < 8u) {
    let r = li / 4u;
    let j = li % 4u;
    let n = n0 + j;
    if (r < rows && n < p.N) { storeC(batch, r, n, select(t0[j], t1[j], r == 1u) * scale[r]); }
  }
#endif
}
#else
const TM: u32 = $TM;
const TN: u32 = $TN;

@compute @workgroup_size($WGX, $WGY, 1)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let M = rowsOf();
  let aOff = aOffOf();
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
#if A_NORM
  var ss: array<f32, TM>;
#endif
#if A_RESID
  // The rows' post-norm scales: a pass over each row of s before the product's pass.
  var postScale: array<f32, TM>;
  var rrow: array<u32, TM>;
  for (var i = 0u; i < TM; i++) {
    var s2 = 0.0;
    for (var k = 0u; k < p.K; k++) { let v = loadA(arow[i] + k * p.aCol); s2 = fma(v, v, s2); }
    postScale[i] = rmsScale(s2);
    rrow[i] = rOffOf() + min(m0 + i, M - 1u) * p.rRow;
  }
  let writes = residWrites(n0 == 0u);
#endif
  for (var k = 0u; k < p.K; k++) {
    for (var i = 0u; i < TM; i++) { av[i] = loadA(arow[i] + k * p.aCol); }
#if A_RESID
    let pg = postGain[k];
    for (var i = 0u; i < TM; i++) {
      av[i] = fma(pg * av[i], postScale[i], resid[rrow[i] + k]);
      if (writes && m0 + i < M) { residOut[rrow[i] + k] = av[i]; }
    }
#endif
#if A_NORM
    let gk = gainAt(k);
    for (var i = 0u; i < TM; i++) { ss[i] = fma(av[i], av[i], ss[i]); av[i] *= gk; }
#endif
    for (var j = 0u; j < TN; j++) { bv[j] = loadB(brow[j] + k * p.bCol); }
    for (var i = 0u; i < TM; i++) {
      for (var j = 0u; j < TN; j++) { acc[i * TN + j] = fma(av[i], bv[j], acc[i * TN + j]); }
    }
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + i;
    if (m >= M) { break; }
#if A_NORM
    let scale = rmsScale(ss[i]);
#else
    let scale = 1.0;
#endif
    for (var j = 0u; j < TN; j++) {
      let n = n0 + j;
      if (n >= p.N) { break; }
      storeC(batch, m, n, acc[i * TN + j] * scale);
    }
  }
}
#endif
