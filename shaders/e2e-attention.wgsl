// TTT-E2E sliding-window attention over a block of query rows (a chunk of the inner loop, or any
// prefill/decode block), forward and flash-style backward. Rows r = 0..rows-1 are positions
// t = pos0 + r (the Block uniform); query t sees keys t - W < j <= t, scores q·k / sqrt(hd).
//
// Keys and values of the block's own positions come from its k, v rows; those of earlier positions
// (pos0 - W < j < pos0) from a KV ring of `ring` slots, position j in slot j mod ring, [ring, H·hd]
// (the layout of src/gpu/ops/kv-cache.ts, so the engine's ring of W + maxRows - 1 slots serves; any
// ring >= W - 1 holds the W - 1 positions a block can reach back to). The ring is only read here: the
// block's keys never need to be in it for these launches, and writing them there is the caller's.
//
//   forward     o = softmax(q k^T / sqrt(hd)) v over the window, and lse = log Σ_j exp(s_j) per (row, head)
//               into stats[2·(row·H + h)]: all the backward needs besides q, k, v, o.
//   backward    (one launch) dq_t = Σ_j P_tj (dP_tj - D_t) k_j / sqrt(hd), P_tj = exp(s_tj - lse_t),
//               dP_tj = dO_t·v_j, D_t = rowsum(dO_t ⊙ o_t), over every key t sees (ring ones included);
//               dk_j = Σ_t P_tj (dP_tj - D_t) q_t / sqrt(hd), dv_j = Σ_t P_tj dO_t, for the block's own
//               keys only, over the block's queries that see them. The ring's keys are constants of the
//               inner step (K/V of earlier chunks are never recomputed), so they get no gradient.
// No score or probability matrix exists in memory: each kernel recomputes the scores from q, k and lse.
//
// forward and the dq role: a workgroup of R invocations owns R consecutive query rows of one head (one
// row each: q, the accumulators in registers) and walks the keys the R rows see together,
// [first(pos0 + r0), pos0 + rEnd), in tiles of T keys that the workgroup loads into workgroup memory
// once for all its rows. The dk/dv role: R consecutive keys of the block per workgroup, walking the
// queries that see them, [r0, min(rEnd - 1 + W, rows)), in tiles of T query rows (q, dO, lse, D).
struct Params {
  heads: u32, window: u32, ring: u32, ringStride: u32,
  qStride: u32, qOff: u32, kStride: u32, kOff: u32,
  vStride: u32, vOff: u32, oStride: u32, oOff: u32,
  gStride: u32, gOff: u32, dqStride: u32, dqOff: u32,
  dkStride: u32, dkOff: u32, dvStride: u32, dvOff: u32,
  scale: f32, _a: u32, _b: u32, _c: u32,
  // NORM_BACK: q and k before their norm (views of one buffer: the row stride, each one's offset); the
  // norm's eps (NORM_FWD too).
  rawStride: u32, qRawOff: u32, kRawOff: u32, normEps: f32,
  // NORM_FWD: where the normed, roped q, k and v (copied) of the block's rows go (views of one buffer).
  outStride: u32, outQOff: u32, outKOff: u32, outVOff: u32,
}
#include "block.wgsl"
#if NORM_BACK
#include "rope-turns.wgsl"
#endif
#if NORM_FWD
#include "rope-turns.wgsl"
#endif

const HD: u32 = $HD;
const R: u32 = $R;
const T: u32 = $T;
// Stands in for -inf (WGSL has no infinity literal); exp(NEG - x) is 0 for any real score x.
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
// The forward and the backward are modules of their own (BACKWARD): each declares its bindings and the
// accessors the shared loadKeys reads through.
#if !BACKWARD
#if NORM_FWD
// forward with the per-head q/k RMSNorm and RoPE on load (shaders/e2e-qk-norm.wgsl's forward, the same
// formula): q, k, v come as the projection wrote them (views of one buffer); each workgroup norms its
// rows' q and the block's keys it loads, and stores its rows' normed q, k and v for the backward.
@group(0) @binding(2) var<storage, read> qkvF: array<f32>;
fn ldQ(i: u32) -> f32 { return qkvF[i]; }
fn ldK(i: u32) -> f32 { return qkvF[i]; }
fn ldV(i: u32) -> f32 { return qkvF[i]; }
@group(0) @binding(3) var<storage, read> kRing: array<f32>;
@group(0) @binding(4) var<storage, read> vRing: array<f32>;
fn ldKRing(i: u32) -> f32 { return kRing[i]; }
fn ldVRing(i: u32) -> f32 { return vRing[i]; }
@group(0) @binding(5) var<storage, read_write> o: array<f32>;
@group(0) @binding(6) var<storage, read_write> stats: array<f32>;
@group(0) @binding(7) var<storage, read_write> qkvOut: array<f32>;
@group(0) @binding(8) var<storage, read> gainF: array<f32>;   // q_norm's hd gains, then k_norm's
@group(0) @binding(9) var<uniform> turnsF: array<vec4u, (HD + 3u) / 4u>;

// y = RoPE(x r g) at position pos, gains from gainF[go..], in place.
fn normRope(x: ptr<function, array<f32, HD>>, go: u32, pos: u32) {
  var ss = 0.0;
  for (var i = 0u; i < HD; i++) { let v = (*x)[i]; ss += v * v; }
  let r = inverseSqrt(ss / f32(HD) + p.normEps);
  for (var i = 0u; i < HD / 2u; i++) {
    let w = turnsF[i / 2u];
    let cs = ropeCosSin(pos, select(w.xy, w.zw, (i & 1u) == 1u));
    let x0 = (*x)[2u * i] * r * gainF[go + 2u * i];
    let x1 = (*x)[2u * i + 1u] * r * gainF[go + 2u * i + 1u];
    (*x)[2u * i] = x0 * cs.x - x1 * cs.y;
    (*x)[2u * i + 1u] = x0 * cs.y + x1 * cs.x;
  }
}
#else
// forward: the block's q, k, v rows (views: stride, offset; may be one buffer).
@group(0) @binding(2) var<storage, read> q: array<f32>;
@group(0) @binding(3) var<storage, read> k: array<f32>;
@group(0) @binding(4) var<storage, read> v: array<f32>;
fn ldQ(i: u32) -> f32 { return q[i]; }
fn ldK(i: u32) -> f32 { return k[i]; }
fn ldV(i: u32) -> f32 { return v[i]; }
// forward: the ring.
@group(0) @binding(5) var<storage, read> kRing: array<f32>;
@group(0) @binding(6) var<storage, read> vRing: array<f32>;
fn ldKRing(i: u32) -> f32 { return kRing[i]; }
fn ldVRing(i: u32) -> f32 { return vRing[i]; }
// forward: o, stats.
@group(0) @binding(7) var<storage, read_write> o: array<f32>;
@group(0) @binding(8) var<storage, read_write> stats: array<f32>;
#endif
#endif
// Two tiles of T rows of one head (keys and values, or queries and their dO), and, for the dk/dv role,
// the lse and D of its query rows.
var<workgroup> tileA: array<f32, T * HD>;
var<workgroup> tileB: array<f32, T * HD>;
var<workgroup> tileL: array<f32, T>;
var<workgroup> tileD: array<f32, T>;

// The first key position query position t sees.
fn firstSeen(t: u32) -> u32 {
  if (t + 1u > p.window) { return t + 1u - p.window; }
  return 0u;
}

// K, V of head h at positions [j0, j0 + T) into tileA, tileB (zeros at positions >= jEnd): from the ring
// before pos0, from the block's rows from pos0 on.
fn loadKeys(j0: u32, jEnd: u32, h: u32, lid: u32) {
  for (var e = lid; e < T * HD; e += R) {
    let j = j0 + e / HD;
    let c = h * HD + e % HD;
    var kx = 0.0;
    var vx = 0.0;
    if (j < jEnd) {
      if (j < blk.pos0) {
        let a = (j % p.ring) * p.ringStride + c;
        kx = ldKRing(a);
        vx = ldVRing(a);
      } else {
        let r = j - blk.pos0;
        kx = ldK(r * p.kStride + p.kOff + c);
        vx = ldV(r * p.vStride + p.vOff + c);
      }
    }
    tileA[e] = kx;
    tileB[e] = vx;
  }
#if NORM_FWD
  // The block's own keys of the tile as the norm and RoPE make them (the ring's already are): one row
  // per invocation, after every invocation's loads.
  workgroupBarrier();
  for (var e = lid; e < T; e += R) {
    let j = j0 + e;
    if (j >= blk.pos0 && j < jEnd) {
      var x: array<f32, HD>;
      for (var i = 0u; i < HD; i++) { x[i] = tileA[e * HD + i]; }
      normRope(&x, HD, j);
      for (var i = 0u; i < HD; i++) { tileA[e * HD + i] = x[i]; }
    }
  }
#endif
}

#if !BACKWARD
@compute @workgroup_size(R)
fn forward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let h = wid.y;
  let r0 = wid.x * R;
  if (r0 >= blk.rows) { return; }
  let rEnd = min(r0 + R, blk.rows);
  let row = r0 + lid;
  let live = row < rEnd;
  let t = blk.pos0 + row;
  let kLo = firstSeen(blk.pos0 + r0);
  let kHi = blk.pos0 + rEnd;
  var qr: array<f32, HD>;
  var acc: array<f32, HD>;
  for (var i = 0u; i < HD; i++) { acc[i] = 0.0; qr[i] = 0.0; }
  if (live) {
    let a = row * p.qStride + p.qOff + h * HD;
    for (var i = 0u; i < HD; i++) { qr[i] = ldQ(a + i); }
#if NORM_FWD
    normRope(&qr, 0u, t);
    // This row's q, k and v as the backward reads them: q, k normed and roped, v as it is.
    let ob = row * p.outStride + h * HD;
    var kx: array<f32, HD>;
    let ka = row * p.kStride + p.kOff + h * HD;
    let va = row * p.vStride + p.vOff + h * HD;
    for (var i = 0u; i < HD; i++) { kx[i] = ldK(ka + i); }
    normRope(&kx, HD, t);
    for (var i = 0u; i < HD; i++) {
      qkvOut[ob + p.outQOff + i] = qr[i];
      qkvOut[ob + p.outKOff + i] = kx[i];
      qkvOut[ob + p.outVOff + i] = ldV(va + i);
    }
#endif
  }
  let first = firstSeen(t);
  var m = NEG;
  var l = 0.0;
  for (var j0 = kLo; j0 < kHi; j0 += T) {
    workgroupBarrier();
    loadKeys(j0, kHi, h, lid);
    workgroupBarrier();
    if (live) {
      let jb = min(j0 + T, t + 1u);
      for (var j = max(j0, first); j < jb; j++) {
        let base = (j - j0) * HD;
        var s = 0.0;
        for (var i = 0u; i < HD; i++) { s += qr[i] * tileA[base + i]; }
        s *= p.scale;
        // Rescale only when the max moves: one exp per key in the common case.
        if (s > m) {
          let f = exp(m - s);
          l *= f;
          for (var i = 0u; i < HD; i++) { acc[i] *= f; }
          m = s;
        }
        let w = exp(s - m);
        l += w;
        for (var i = 0u; i < HD; i++) { acc[i] += w * tileB[base + i]; }
      }
    }
  }
  if (live) {
    let a = row * p.oStride + p.oOff + h * HD;
    for (var i = 0u; i < HD; i++) { o[a + i] = acc[i] / l; }
    stats[2u * (row * p.heads + h)] = m + log(l);
  }
}
#endif

#if BACKWARD
// The backward, ONE launch: workgroups [0, n) take the dq role (R query rows each), [n, 2n) the dk/dv role
// (R of the block's keys each), n = ceil(rows / R), all for head wid.y. D = rowsum(dO ⊙ o) is formed
// where it is read (a dq workgroup: its rows'; a dk/dv workgroup: each query tile's, as the tile is
// loaded), in the same order everywhere, so no launch waits for another. Bindings: q, k, v are views
// of one buffer (qkvB), o and dO of one (oG), dq and dk of one (dqk), so the launch binds 7 storage
// buffers (6 with SHARED_DKV, 8 with NORM_BACK), within the 8 every WebGPU device allows.
@group(0) @binding(2) var<storage, read> qkvB: array<f32>;
@group(0) @binding(3) var<storage, read> kRingB: array<f32>;
@group(0) @binding(4) var<storage, read> vRingB: array<f32>;
fn ldK(i: u32) -> f32 { return qkvB[i]; }
fn ldV(i: u32) -> f32 { return qkvB[i]; }
fn ldKRing(i: u32) -> f32 { return kRingB[i]; }
fn ldVRing(i: u32) -> f32 { return vRingB[i]; }
@group(0) @binding(5) var<storage, read> oG: array<f32>;
@group(0) @binding(6) var<storage, read> statsB: array<f32>;
@group(0) @binding(7) var<storage, read_write> dqk: array<f32>;
#if SHARED_DKV
fn storeDv(i: u32, x: f32) { dqk[i] = x; }
#else
@group(0) @binding(8) var<storage, read_write> dvB: array<f32>;
fn storeDv(i: u32, x: f32) { dvB[i] = x; }
#endif

#if NORM_BACK
// The per-head q/k RMSNorm and RoPE run before the attention (shaders/e2e-qk-norm.wgsl's forward); their
// backward runs here as dq and dk are stored (that file's backwardDx with ROPE_BACK, the same formula),
// so dq and dk are the gradients of q and k before the norm: no launch of its own.
// Only with SHARED_DKV (binding 8 is free), so the launch binds 8 storage buffers.
@group(0) @binding(8) var<storage, read> rawB: array<f32>;
@group(0) @binding(9) var<storage, read> gainB: array<f32>;   // q_norm's hd gains, then k_norm's
// The RoPE turn table (src/gpu/ops/rope-turn-table.ts), pair i in word pair i of the vec4s.
@group(0) @binding(10) var<uniform> turnsU: array<vec4u, (HD + 3u) / 4u>;

fn turnOf(i: u32) -> vec2u {
  let w = turnsU[i / 2u];
  return select(w.xy, w.zw, (i & 1u) == 1u);
}

// g: the gradient of the normed, roped head vector at position pos; its pre-norm vector at rawB[xo..],
// gains at gainB[go..]; stores the gradient of the pre-norm vector at dqk[o..].
fn storeNormBack(g: ptr<function, array<f32, HD>>, xo: u32, go: u32, pos: u32, o: u32) {
  for (var i = 0u; i < HD / 2u; i++) {
    let cs = ropeCosSin(pos, turnOf(i));
    let d0 = (*g)[2u * i];
    let d1 = (*g)[2u * i + 1u];
    (*g)[2u * i] = d0 * cs.x + d1 * cs.y;
    (*g)[2u * i + 1u] = d1 * cs.x - d0 * cs.y;
  }
  var ss = 0.0;
  var dot = 0.0;
  for (var i = 0u; i < HD; i++) {
    let v = rawB[xo + i];
    ss += v * v;
    dot += (*g)[i] * gainB[go + i] * v;
  }
  let r = inverseSqrt(ss / f32(HD) + p.normEps);
  let c = r * r * r * dot / f32(HD);
  for (var i = 0u; i < HD; i++) { dqk[o + i] = r * gainB[go + i] * (*g)[i] - c * rawB[xo + i]; }
}
#endif

// D of block row r, head h.
fn deltaOf(r: u32, h: u32) -> f32 {
  let a = r * p.oStride + p.oOff + h * HD;
  let b = r * p.gStride + p.gOff + h * HD;
  var d = 0.0;
  for (var i = 0u; i < HD; i++) { d += oG[a + i] * oG[b + i]; }
  return d;
}

// q, dO, lse, D of head h at block rows [t0, t0 + T) into the tiles (zeros at rows >= tEnd).
fn loadQueriesB(t0: u32, tEnd: u32, h: u32, lid: u32) {
  for (var e = lid; e < T * HD; e += R) {
    let r = t0 + e / HD;
    let c = h * HD + e % HD;
    var qx = 0.0;
    var gx = 0.0;
    if (r < tEnd) {
      qx = qkvB[r * p.qStride + p.qOff + c];
      gx = oG[r * p.gStride + p.gOff + c];
    }
    tileA[e] = qx;
    tileB[e] = gx;
  }
  for (var e = lid; e < T; e += R) {
    let r = t0 + e;
    var lx = 0.0;
    var dx = 0.0;
    if (r < tEnd) {
      lx = statsB[2u * (r * p.heads + h)];
      dx = deltaOf(r, h);
    }
    tileL[e] = lx;
    tileD[e] = dx;
  }
}

// dq_t = Σ_j P_tj (dP_tj - D_t) k_j / sqrt(hd) for R query rows from r0, over every key they see.
fn backwardQRows(r0: u32, h: u32, lid: u32) {
  let rEnd = min(r0 + R, blk.rows);
  let row = r0 + lid;
  let live = row < rEnd;
  let t = blk.pos0 + row;
  let kLo = firstSeen(blk.pos0 + r0);
  let kHi = blk.pos0 + rEnd;
  var qr: array<f32, HD>;
  var gr: array<f32, HD>;
  var acc: array<f32, HD>;
  for (var i = 0u; i < HD; i++) { acc[i] = 0.0; qr[i] = 0.0; gr[i] = 0.0; }
  var lse = 0.0;
  var dd = 0.0;
  if (live) {
    let a = row * p.qStride + p.qOff + h * HD;
    let b = row * p.gStride + p.gOff + h * HD;
    for (var i = 0u; i < HD; i++) { qr[i] = qkvB[a + i]; gr[i] = oG[b + i]; }
    lse = statsB[2u * (row * p.heads + h)];
    dd = deltaOf(row, h);
  }
  let first = firstSeen(t);
  for (var j0 = kLo; j0 < kHi; j0 += T) {
    workgroupBarrier();
    loadKeys(j0, kHi, h, lid);
    workgroupBarrier();
    if (live) {
      let jb = min(j0 + T, t + 1u);
      for (var j = max(j0, first); j < jb; j++) {
        let base = (j - j0) * HD;
        var s = 0.0;
        var dp = 0.0;
        for (var i = 0u; i < HD; i++) {
          s += qr[i] * tileA[base + i];
          dp += gr[i] * tileB[base + i];
        }
        let ds = exp(s * p.scale - lse) * (dp - dd);
        for (var i = 0u; i < HD; i++) { acc[i] += ds * tileA[base + i]; }
      }
    }
  }
  if (live) {
    let a = row * p.dqStride + p.dqOff + h * HD;
#if NORM_BACK
    for (var i = 0u; i < HD; i++) { acc[i] *= p.scale; }
    storeNormBack(&acc, row * p.rawStride + p.qRawOff + h * HD, 0u, t, a);
#else
    for (var i = 0u; i < HD; i++) { dqk[a + i] = acc[i] * p.scale; }
#endif
  }
}

// dk_j = Σ_t P_tj (dP_tj - D_t) q_t / sqrt(hd), dv_j = Σ_t P_tj dO_t for R of the block's keys from c0,
// over the block's queries that see them (the ring's keys are constants: no gradient).
fn backwardKVRows(c0: u32, h: u32, lid: u32) {
  let cEnd = min(c0 + R, blk.rows);
  let kr = c0 + lid;
  let live = kr < cEnd;
  // Block rows whose queries see at least one of keys [c0, cEnd): row t sees row j iff j <= t < j + W.
  let tHi = min(cEnd - 1u + p.window, blk.rows);
  var kx: array<f32, HD>;
  var vx: array<f32, HD>;
  var dkr: array<f32, HD>;
  var dvr: array<f32, HD>;
  for (var i = 0u; i < HD; i++) { kx[i] = 0.0; vx[i] = 0.0; dkr[i] = 0.0; dvr[i] = 0.0; }
  if (live) {
    let a = kr * p.kStride + p.kOff + h * HD;
    let b = kr * p.vStride + p.vOff + h * HD;
    for (var i = 0u; i < HD; i++) { kx[i] = qkvB[a + i]; vx[i] = qkvB[b + i]; }
  }
  for (var t0 = c0; t0 < tHi; t0 += T) {
    workgroupBarrier();
    loadQueriesB(t0, tHi, h, lid);
    workgroupBarrier();
    if (live) {
      let tb = min(min(t0 + T, tHi), kr + p.window);
      for (var t = max(t0, kr); t < tb; t++) {
        let e = t - t0;
        let base = e * HD;
        var s = 0.0;
        var dp = 0.0;
        for (var i = 0u; i < HD; i++) {
          s += tileA[base + i] * kx[i];
          dp += tileB[base + i] * vx[i];
        }
        let pr = exp(s * p.scale - tileL[e]);
        let ds = pr * (dp - tileD[e]);
        for (var i = 0u; i < HD; i++) {
          dvr[i] += pr * tileB[base + i];
          dkr[i] += ds * tileA[base + i];
        }
      }
    }
  }
  if (live) {
    let a = kr * p.dkStride + p.dkOff + h * HD;
    let b = kr * p.dvStride + p.dvOff + h * HD;
    for (var i = 0u; i < HD; i++) { storeDv(b + i, dvr[i]); }
#if NORM_BACK
    for (var i = 0u; i < HD; i++) { dkr[i] *= p.scale; }
    storeNormBack(&dkr, kr * p.rawStride + p.kRawOff + h * HD, HD, blk.pos0 + kr, a);
#else
    for (var i = 0u; i < HD; i++) { dqk[a + i] = dkr[i] * p.scale; }
#endif
  }
}

@compute @workgroup_size(R)
fn backward(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let n = (blk.rows + R - 1u) / R;
  // Workgroup-uniform branches: the barriers inside are reached by every invocation of a workgroup.
  if (wid.x < n) {
    backwardQRows(wid.x * R, wid.y, lid);
  } else if (wid.x < 2u * n) {
    backwardKVRows((wid.x - n) * R, wid.y, lid);
  }
}
#endif
