// The elementwise and per-row kernels of the fast-weight branch; every matrix product is a matmul.wgsl
// launch (src/gpu/ops/fast-weights.ts lays out the strides). Each kernel is its own #if section, chosen
// by a define, so that no two entry points of one module claim the same binding slots (WGSL compilers
// differ on whether that is allowed).
//
// Layouts (f32, row-major), D = Hf * df:
//   qkv   [rows, 3D + G]    the engine's q | k | v | raw gates (one projection: the gates read its input)
//   fqkv  [rows, 3D]        fast q | k | v, same columns as the engine's q | k | v
//   act   [rows, G]         activated gates: lr (3Hf) | momentum gate (Hf)? | ttt scale (Hf)?
//   gu    [rows, Hf, 2dh]   G = x W0^T | U = x W2^T per head
//   s     [C, Hf, 3dh]      chunk update: G | U | P = V W1, then the three scaled gradient factors
//   w     [Hf, 3dh, df]     per head W0 rows, W2 rows, then W1 stored transposed
//   pending [C, 2D + 4Hf]   fk | fv | lr | beta of the chunk being filled
#include "block.wgsl"

const WG: u32 = 64u;
#include "reduce.wgsl"

// A column offset that says "this gate is absent".
const NONE: u32 = 0xffffffffu;

fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn silu(x: f32) -> f32 { return x * sigmoid(x); }

// log(1 + e^x) without log1p: log(1 + e) loses e's low bits when e is small, and the learning rates
// sit near softplus(inv_softplus(0.001)) = 0.001, where that costs ~1e-4 relative. (u - 1) is the e that
// 1 + e actually rounded to, which cancels the rounding error (Goldberg's log1p).
fn softplus(x: f32) -> f32 {
  if (x > 20.0) { return x; }
  let e = exp(x);
  let u = 1.0 + e;
  if (u == 1.0) { return e; }
  return log(u) * (e / (u - 1.0));
}

#if INPUTS
#include "rope-turns.wgsl"
struct Params {
  D: u32, Hf: u32, df: u32, G: u32, momCol: u32, scaleCol: u32, qkvSilu: u32, lrShift: f32,
  // F: the columns of the branch's own q|k|v after attention's (3D with fw_own_qkv, else 0).
  C: u32, P: u32, gateCols: u32, headDim: u32, F: u32, attention: u32, qkNorm: u32, normEps: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(3) var<storage, read> qkScale: array<f32>;
@group(0) @binding(4) var<storage, read> qkOffset: array<f32>;
// q_norm | k_norm gains [2D] (bound to qkScale when the layer has none: never read then).
@group(0) @binding(5) var<storage, read> qkNormW: array<f32>;
@group(0) @binding(6) var<storage, read_write> fqkv: array<f32>;
@group(0) @binding(7) var<storage, read_write> act: array<f32>;
@group(0) @binding(8) var<storage, read_write> pending: array<f32>;

// [headDim / 2] turn-table entries (src/gpu/ops/rope-turn-table.ts): the same angles as rope.wgsl, so a
// row ropes to the same numbers whichever kernel turns it.
@group(0) @binding(9) var<storage, read> turns: array<vec2u>;

fn turn(pos: u32, i: u32) -> vec2f { return ropeCosSin(pos, turns[i]); }

// Everything row-wise between the q|k|v|gates projection and the attention/apply, in one launch, one
// workgroup per row: a row needs whole-row reductions (q_norm, k_norm over D) and per-head ones (the fast
// q, k L2 norms), and a RoPE pair may straddle fast heads, so a row is the smallest unit that needs no
// second launch. In order:
//   1. with `attention` and `qkNorm`: the sums of squares of the row's q and k (attention's q_norm, k_norm);
//   2. per fast head: fq, fk, fv = silu?(q_n * scale + offset), ..., fq and fk L2-normed per head; fv also
//      into the pending row (with F > 0 from the branch's own q, k, v, which attention's q/k norm never touches);
//   3. RoPE of fq, fk (fk also into the pending row) and, with `attention`, of the row's own q_n, k_n in
//      place in qkv, after a barrier, since step 2 read the un-roped q, k across the row;
//   4. the activated gates (softplus lr, sigmoid momentum, silu ttt scale), lr and beta into the pending row.
// The pending row is pos0 % C + row: a block never crosses a chunk boundary.
@compute @workgroup_size(64)
fn inputs(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x;
  if (row >= blk.rows) { return; }
  let D = p.D;
  // qkv's rows are q | k | v | the branch's own q | k | v (F > 0) | raw gates (one projection); fqkv's
  // are fq | fk | fv.
  let qb = row * (3u * D + p.F + p.G);
  let fb = qb + p.F;
  let normFast = p.qkNorm != 0u && p.F == 0u;
  let base = row * 3u * D;
  let pr = ((blk.pos0 % p.C) + row) * p.P;
  var inv = vec2f(1.0);
  if (p.qkNorm != 0u) {
    var ss = vec2f(0.0);
    for (var i = lid; i < D; i += WG) {
      let q = qkv[qb + i];
      let k = qkv[qb + D + i];
      ss = fma(vec2f(q, k), vec2f(q, k), ss);
    }
    let t = wgSum2f(lid, ss);
    inv = vec2f(inverseSqrt(t.x / f32(D) + p.normEps), inverseSqrt(t.y / f32(D) + p.normEps));
  }

  for (var h = 0u; h < p.Hf; h++) {
    var ss = vec2f(0.0);
    for (var j = lid; j < p.df; j += WG) {
      let i = h * p.df + j;
      var q = qkv[fb + i];
      var k = qkv[fb + D + i];
      if (normFast) {
        q = q * inv.x * qkNormW[i];
        k = k * inv.y * qkNormW[D + i];
      }
      q = q * qkScale[2u * i] + qkOffset[2u * i];
      k = k * qkScale[2u * i + 1u] + qkOffset[2u * i + 1u];
      var v = qkv[fb + 2u * D + i];
      if (p.qkvSilu != 0u) { q = silu(q); k = silu(k); v = silu(v); }
      fqkv[base + i] = q;
      fqkv[base + D + i] = k;
      fqkv[base + 2u * D + i] = v;
      pending[pr + D + i] = v;
      ss += vec2f(q * q, k * k);
    }
    let n = 1.0 / (sqrt(wgSum2f(lid, ss)) + 1e-5);
    // Each lane rescales only what it wrote above.
    for (var j = lid; j < p.df; j += WG) {
      let i = h * p.df + j;
      fqkv[base + i] *= n.x;
      fqkv[base + D + i] *= n.y;
    }
  }
  // fqkv's normed values and qkv's un-roped q, k have been read and written across lanes until here.
  storageBarrier();

  let half = p.headDim / 2u;
  for (var pi = lid; pi < D / 2u; pi += WG) {
    let i = pi % half;
    let a = (pi / half) * p.headDim + i;
    let b = a + half;
    let cs = turn(blk.pos0 + row, i);
    let q1 = fqkv[base + a];
    let q2 = fqkv[base + b];
    fqkv[base + a] = q1 * cs.x - q2 * cs.y;
    fqkv[base + b] = q2 * cs.x + q1 * cs.y;
    let k1 = fqkv[base + D + a];
    let k2 = fqkv[base + D + b];
    let ka = k1 * cs.x - k2 * cs.y;
    let kb = k2 * cs.x + k1 * cs.y;
    fqkv[base + D + a] = ka;
    fqkv[base + D + b] = kb;
    pending[pr + a] = ka;
    pending[pr + b] = kb;
    if (p.attention != 0u) {
      var x = vec4f(qkv[qb + a], qkv[qb + b], qkv[qb + D + a], qkv[qb + D + b]);
      if (p.qkNorm != 0u) {
        x = x * vec4f(inv.x, inv.x, inv.y, inv.y) * vec4f(qkNormW[a], qkNormW[b], qkNormW[D + a], qkNormW[D + b]);
      }
      qkv[qb + a] = x.x * cs.x - x.y * cs.y;
      qkv[qb + b] = x.y * cs.x + x.x * cs.y;
      qkv[qb + D + a] = x.z * cs.x - x.w * cs.y;
      qkv[qb + D + b] = x.w * cs.x + x.z * cs.y;
    }
  }

  let g = row * p.G;
  for (var col = lid; col < p.G; col += WG) {
    let x = qkv[qb + 3u * D + p.F + col];
    var y: f32;
    if (col < 3u * p.Hf) {
      y = softplus(x + p.lrShift);
    } else if (p.momCol != NONE && col >= p.momCol && col < p.momCol + p.Hf) {
      y = sigmoid(x);
    } else {
      y = silu(x);
    }
    act[g + col] = y;
    if (col < p.gateCols) { pending[pr + 2u * D + col] = y; }
  }
  // A config without momentum leaves beta's columns: zero, as the update expects.
  for (var col = 2u * D + p.gateCols + lid; col < p.P; col += WG) { pending[pr + col] = 0.0; }
}
#endif

#if GLU
struct Params { Hf: u32, dh: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read> gu: array<f32>;
@group(0) @binding(3) var<storage, read_write> hd: array<f32>;

// hd[r, h, j] = silu(G) * U: the fast MLP's hidden activation, input of the W1 product.
@compute @workgroup_size(64)
fn glu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * WG;
  if (id >= blk.rows * p.Hf * p.dh) { return; }
  let j = id % p.dh;
  let src = (id / p.dh) * 2u * p.dh + j;
  hd[id] = silu(gu[src]) * gu[src + p.dh];
}
#endif

#if APPLY_ROWS
struct Params { D: u32, df: u32, dh: u32, G: u32, scaleCol: u32, S: u32, eps: f32, _a: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read> fqkv: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> tttNorm: array<f32>;
@group(0) @binding(5) var<storage, read> act: array<f32>;
@group(0) @binding(6) var<storage, read_write> o: array<f32>;

const DF: u32 = $DF;
const DH: u32 = $DH;
// Outputs per invocation (df spread over the workgroup).
const YPT: u32 = (DF + WG - 1u) / WG;
var<workgroup> fqShared: array<f32, DF>;
var<workgroup> hShared: array<f32, DH>;

// The whole apply for a block of a few rows (decode) in one launch, one workgroup per (row, head):
// hd = silu(fq W0^T) * (fq W2^T), y = hd W1^T, o += RMSNorm(y) * ttt_norm * scale. The sums run in the
// order the apply's matmul launches and normAdd use (k ascending, the same reduction tree), so a block
// gets the same numbers whichever path serves it.
@compute @workgroup_size(64)
fn applyRows(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x;
  let h = wid.y;
  if (row >= blk.rows) { return; }
  let wBase = h * 3u * p.S;
  for (var k = lid; k < DF; k += WG) { fqShared[k] = fqkv[row * 3u * p.D + h * DF + k]; }
  workgroupBarrier();
  for (var j = lid; j < DH; j += WG) {
    var g = 0.0;
    var u = 0.0;
    for (var k = 0u; k < DF; k++) {
      g = fma(fqShared[k], w[wBase + j * DF + k], g);
      u = fma(fqShared[k], w[wBase + p.S + j * DF + k], u);
    }
    hShared[j] = silu(g) * u;
  }
  workgroupBarrier();
  var yv: array<f32, YPT>;
  var ss = 0.0;
  for (var t = 0u; t < YPT; t++) {
    let i = lid + t * WG;
    if (i < DF) {
      var y = 0.0;
      for (var j = 0u; j < DH; j++) { y = fma(hShared[j], w[wBase + 2u * p.S + j * DF + i], y); }
      yv[t] = y;
      ss = fma(y, y, ss);
    }
  }
  var scale = inverseSqrt(wgSum(lid, ss) / f32(DF) + p.eps);
  if (p.scaleCol != NONE) { scale *= act[row * p.G + p.scaleCol + h]; }
  let base = row * p.D + h * DF;
  for (var t = 0u; t < YPT; t++) {
    let i = lid + t * WG;
    if (i < DF) { o[base + i] += yv[t] * scale * tttNorm[i]; }
  }
}
#endif

#if NORM_ADD
struct Params { D: u32, df: u32, G: u32, scaleCol: u32, eps: f32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read> tttNorm: array<f32>;
@group(0) @binding(4) var<storage, read> act: array<f32>;
@group(0) @binding(5) var<storage, read_write> o: array<f32>;

// o[r, h*df + i] += RMSNorm(y[r, head h])_i * ttt_norm_i * scale[r, h]: one workgroup per (row, head).
@compute @workgroup_size(64)
fn normAdd(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x;
  let h = wid.y;
  if (row >= blk.rows) { return; }
  let base = row * p.D + h * p.df;
  var ss = 0.0;
  for (var i = lid; i < p.df; i += WG) { let v = y[base + i]; ss = fma(v, v, ss); }
  var scale = inverseSqrt(wgSum(lid, ss) / f32(p.df) + p.eps);
  if (p.scaleCol != NONE) { scale *= act[row * p.G + p.scaleCol + h]; }
  for (var i = lid; i < p.df; i += WG) { o[base + i] += y[base + i] * scale * tttNorm[i]; }
}
#endif


#if GRAD
struct Params { C: u32, Hf: u32, dh: u32, P: u32, lrCol: u32, _a: u32, _b: u32, _c: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pending: array<f32>;
@group(0) @binding(2) var<storage, read_write> s: array<f32>;

// From G = K W0^T, U = K W2^T, P = V W1 (per token i, head h, hidden unit j), in place, the factors
// whose products with K or V are the negative gradients (FastWeightHead.gradients):
//   dG * lr0 = P U sig(G) (1 + G (1 - sig(G))) lr0,   dU * lr2 = P silu(G) lr2,   H * lr1 = silu(G) U lr1.
@compute @workgroup_size(64)
fn grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * WG;
  if (id >= p.C * p.Hf * p.dh) { return; }
  let j = id % p.dh;
  let ih = id / p.dh;
  let i = ih / p.Hf;
  let h = ih % p.Hf;
  let base = ih * 3u * p.dh + j;
  let g = s[base];
  let u = s[base + p.dh];
  let pv = s[base + 2u * p.dh];
  let lr = i * p.P + p.lrCol + 3u * h;
  let sg = sigmoid(g);
  let sl = g * sg;
  s[base] = pv * u * sg * (1.0 + g * (1.0 - sg)) * pending[lr];
  s[base + p.dh] = pv * sl * pending[lr + 2u];
  s[base + 2u * p.dh] = sl * u * pending[lr + 1u];
}
#endif
