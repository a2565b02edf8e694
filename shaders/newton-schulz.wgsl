// The chunk update's tail, after the gradient products (matmul.wgsl launches): momentum, Muon's
// Newton-Schulz orthogonalisation and the row renorm, all in one launch with one workgroup per gradient
// matrix. Every phase of the tail reads only its own matrix, so a matrix needs no other workgroup, and
// the phases are ordered by storage barriers instead of launches (25 launches before: a prepare, four per
// Newton-Schulz step, a renorm). The price is parallelism: 3·Hf workgroups do the whole tail.
//
// The 3·Hf gradients are stored as [3Hf, dh, df] blocks (per head: dW0, dW2, dW1^T). Muon works on
// X = G or G^T, whichever is wide ([m, n], m <= n): NS5 is an odd matrix polynomial, NS5(G^T) =
// NS5(G)^T, so storing dW1 transposed changes nothing but the layout.
//
// One Newton-Schulz step with constants (a, b, c), on X [m, n]:
//   A = X X^T;  B = c A A + b A + a I;  X' = B X       (= a X + (b A + c A^2) X)
//
// `work` holds, per matrix z: the gradient [S] at z·S (the learn products wrote it there), then, with
// Muon, after all 3Hf gradients: X [m·n], A [m·m], B [m·m]. X ping-pongs between the X slot and the
// gradient's own slot (the gradient is consumed by the first phase); with an odd number of steps the
// result lands in the gradient's slot, which the renorm reads either way.
#if UPDATE
const NS_STEPS: u32 = $NS_STEPS;
struct Params { S: u32, dh: u32, df: u32, C: u32, P: u32, betaCol: u32, transposed: u32, Z: u32, coef: array<vec4f, NS_STEPS> }
@group(0) @binding(0) var<uniform> p: Params;
#if VEC4
// m and n multiples of 4: every slot and row starts on a vec4, so the products load whole vec4s.
@group(0) @binding(1) var<storage, read_write> work: array<vec4f>;
fn ld(i: u32) -> f32 { return work[i >> 2u][i & 3u]; }
fn st(i: u32, v: f32) { work[i >> 2u][i & 3u] = v; }
#else
@group(0) @binding(1) var<storage, read_write> work: array<f32>;
fn ld(i: u32) -> f32 { return work[i]; }
fn st(i: u32, v: f32) { work[i] = v; }
#endif
@group(0) @binding(2) var<storage, read> targetNorm: array<f32>;
@group(0) @binding(3) var<storage, read_write> w: array<f32>;
#if MOMENTUM
@group(0) @binding(4) var<storage, read> pending: array<f32>;
@group(0) @binding(5) var<storage, read_write> mom: array<f32>;
#endif

const WG: u32 = 256u;
#include "reduce.wgsl"

// out[o + i·cols + j] = ca·acc + cb·work[e + i·cols + j] + cd·[i == j] for i < rows, j < cols, with
// acc = sum over k ascending of L(i, k)·R(k, j), L(i, k) = work[l + i·li + k·lk], R(k, j) = work[r + k·rk + j·rj].
// 4×4 register tiles dealt round-robin to the invocations (no workgroup memory: on the CPU emulators a
// barrier per K tile would cost more than it saves); an edge tile clamps its loads and stores only its own.
fn product(lid: u32, rows: u32, cols: u32, K: u32, l: u32, li: u32, lk: u32, r: u32, rk: u32, rj: u32,
           o: u32, ca: f32, cb: f32, cd: f32, e: u32) {
  let tc = (cols + 3u) / 4u;
  let tiles = ((rows + 3u) / 4u) * tc;
  let lane = vec4u(0u, 1u, 2u, 3u);
  for (var t = lid; t < tiles; t += WG) {
    let i0 = (t / tc) * 4u;
    let j0 = (t % tc) * 4u;
    let lo = vec4u(l) + min(vec4u(i0) + lane, vec4u(rows - 1u)) * li;
    let ro = vec4u(r) + min(vec4u(j0) + lane, vec4u(cols - 1u)) * rj;
    // Initialised explicitly: on lavapipe a `var acc: array<vec4f, 4>;` here kept the previous tile's sums
    // on an invocation's second tile (measured: NaN weights once a matrix had more tiles than invocations).
    var acc = array<vec4f, 4>(vec4f(0.0), vec4f(0.0), vec4f(0.0), vec4f(0.0));
    for (var k = 0u; k < K; k++) {
      let kl = k * lk;
      let kr = k * rk;
      let rv = vec4f(ld(ro.x + kr), ld(ro.y + kr), ld(ro.z + kr), ld(ro.w + kr));
      acc[0] = fma(vec4f(ld(lo.x + kl)), rv, acc[0]);
      acc[1] = fma(vec4f(ld(lo.y + kl)), rv, acc[1]);
      acc[2] = fma(vec4f(ld(lo.z + kl)), rv, acc[2]);
      acc[3] = fma(vec4f(ld(lo.w + kl)), rv, acc[3]);
    }
    for (var ii = 0u; ii < 4u; ii++) {
      let i = i0 + ii;
      if (i >= rows) { break; }
      for (var jj = 0u; jj < 4u; jj++) {
        let j = j0 + jj;
        if (j >= cols) { break; }
        var v = ca * acc[ii][jj];
        if (cb != 0.0) { v = fma(cb, ld(e + i * cols + j), v); }
        if (i == j) { v += cd; }
        st(o + i * cols + j, v);
      }
    }
  }
}


#if VEC4
// The same products on whole vec4s (every offset and row stride a multiple of 4, so are rows and cols).
// dotRows: out[i, j] = Σ_k L[l + i·li + k]·R[r + j·rj + k], both operands contiguous in k, for a SYMMETRIC
// result (X X^T; and A A, A being symmetric) with an epilogue that keeps it symmetric (cb·A + cd·I): only
// the tiles on and above the diagonal are computed, each stored twice (itself and, off the diagonal, its
// transpose), which halves the two products' work. Both copies hold the same numbers, so the result is
// exactly symmetric, as the next step's A A and B X (B = B^T) take it to be. A 4×4 tile per invocation,
// 4 k at a time; then the epilogue as in product.
fn dotRows(lid: u32, m: u32, K: u32, l: u32, li: u32, r: u32, rj: u32, o: u32, ca: f32, cb: f32, cd: f32, e: u32) {
  let tc = m / 4u;
  for (var t = lid; t < tc * (tc + 1u) / 2u; t += WG) {
    // The t-th tile of the upper triangle, row by row: (ti, tj), ti <= tj.
    var ti = 0u;
    var rest = t;
    while (rest >= tc - ti) {
      rest -= tc - ti;
      ti++;
    }
    let i0 = ti * 4u;
    let j0 = (ti + rest) * 4u;
    var acc = array<vec4f, 4>(vec4f(0.0), vec4f(0.0), vec4f(0.0), vec4f(0.0));
    for (var k4 = 0u; k4 < K / 4u; k4++) {
      let r0 = work[(r + j0 * rj) / 4u + k4];
      let r1 = work[(r + (j0 + 1u) * rj) / 4u + k4];
      let r2 = work[(r + (j0 + 2u) * rj) / 4u + k4];
      let r3 = work[(r + (j0 + 3u) * rj) / 4u + k4];
      for (var ii = 0u; ii < 4u; ii++) {
        let lv = work[(l + (i0 + ii) * li) / 4u + k4];
        acc[ii] += vec4f(dot(lv, r0), dot(lv, r1), dot(lv, r2), dot(lv, r3));
      }
    }
    storeTile(i0, j0, m, acc, o, ca, cb, cd, e);
    if (j0 != i0) {
      let tr = array<vec4f, 4>(
        vec4f(acc[0].x, acc[1].x, acc[2].x, acc[3].x), vec4f(acc[0].y, acc[1].y, acc[2].y, acc[3].y),
        vec4f(acc[0].z, acc[1].z, acc[2].z, acc[3].z), vec4f(acc[0].w, acc[1].w, acc[2].w, acc[3].w));
      storeTile(j0, i0, m, tr, o, ca, cb, cd, e);
    }
  }
}

// axpyRows: out[i, j] = Σ_k L[l + i·li + k]·R[r + k·rk + j], L contiguous in k, R in j (B X): a 4×4 tile,
// each row of it a sum of 4-wide rows of R.
fn axpyRows(lid: u32, rows: u32, cols: u32, K: u32, l: u32, li: u32, r: u32, rk: u32, o: u32) {
  let tc = cols / 4u;
  for (var t = lid; t < (rows / 4u) * tc; t += WG) {
    let i0 = (t / tc) * 4u;
    let j0 = (t % tc) * 4u;
    var acc = array<vec4f, 4>(vec4f(0.0), vec4f(0.0), vec4f(0.0), vec4f(0.0));
    for (var k4 = 0u; k4 < K / 4u; k4++) {
      let k = 4u * k4;
      let r0 = work[(r + k * rk + j0) / 4u];
      let r1 = work[(r + (k + 1u) * rk + j0) / 4u];
      let r2 = work[(r + (k + 2u) * rk + j0) / 4u];
      let r3 = work[(r + (k + 3u) * rk + j0) / 4u];
      for (var ii = 0u; ii < 4u; ii++) {
        let lv = work[(l + (i0 + ii) * li) / 4u + k4];
        acc[ii] += lv.x * r0 + lv.y * r1 + lv.z * r2 + lv.w * r3;
      }
    }
    storeTile(i0, j0, cols, acc, o, 1.0, 0.0, 0.0, 0u);
  }
}

fn storeTile(i0: u32, j0: u32, cols: u32, acc: array<vec4f, 4>, o: u32, ca: f32, cb: f32, cd: f32, e: u32) {
  for (var ii = 0u; ii < 4u; ii++) {
    let i = i0 + ii;
    var v = ca * acc[ii];
    if (cb != 0.0) { v = fma(vec4f(cb), work[(e + i * cols + j0) / 4u], v); }
    v += select(vec4f(0.0), vec4f(cd), vec4u(j0) + vec4u(0u, 1u, 2u, 3u) == vec4u(i));
    work[(o + i * cols + j0) / 4u] = v;
  }
}
#endif

@compute @workgroup_size(256)
fn update(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let z = wid.x;
  let base = z * p.S;
  // 1. Momentum: dW += mean(beta of the head over the chunk) * M; M = dW. Muon: X0 = dW / (||dW||_F + 1e-7),
  //    written wide. Each lane reads back only elements it wrote (or never wrote), so no barrier between.
#if MOMENTUM
  var sb = 0.0;
  for (var i = lid; i < p.C; i += WG) { sb += pending[i * p.P + p.betaCol + z / 3u]; }
  let mbar = wgSum(lid, sb) / f32(p.C);
#endif
  var ss = 0.0;
  for (var e = lid; e < p.S; e += WG) {
    var g = ld(base + e);
#if MOMENTUM
    g += mbar * mom[base + e];
    mom[base + e] = g;
#if !MUON
    st(base + e, g);
#endif
#endif
    ss = fma(g, g, ss);
  }
#if MUON
  let m = min(p.dh, p.df);
  let n = max(p.dh, p.df);
  let mn = m * n;
  let xSlot = p.Z * p.S + z * (mn + 2u * m * m);
  let aSlot = xSlot + mn;
  let bSlot = aSlot + m * m;
  let inv = 1.0 / (sqrt(wgSum(lid, ss)) + 1e-7);
  for (var e = lid; e < p.S; e += WG) {
#if MOMENTUM
    let g = mom[base + e];
#else
    let g = ld(base + e);
#endif
    var dst = e;
    if (p.transposed != 0u) { dst = (e % p.df) * p.dh + e / p.df; }
    st(xSlot + dst, g * inv);
  }
  // 2. The Newton-Schulz steps, X0 -> gradient slot -> X slot -> ...
  for (var s = 0u; s < NS_STEPS; s++) {
    storageBarrier();
    let c = p.coef[s];
    let x = select(xSlot, base, s % 2u == 1u);
    let xNext = select(base, xSlot, s % 2u == 1u);
#if VEC4
    dotRows(lid, m, n, x, n, x, n, aSlot, 1.0, 0.0, 0.0, 0u);                              // A = X X^T
    storageBarrier();
    dotRows(lid, m, m, aSlot, m, aSlot, m, bSlot, c.z, c.y, c.x, aSlot);                   // B = c A A + b A + a I (A = A^T)
    storageBarrier();
    axpyRows(lid, m, n, m, bSlot, m, x, n, xNext);                                          // X' = B X
#else
    product(lid, m, m, n, x, n, 1u, x, 1u, n, aSlot, 1.0, 0.0, 0.0, 0u);                   // A = X X^T
    storageBarrier();
    product(lid, m, m, m, aSlot, m, 1u, aSlot, m, 1u, bSlot, c.z, c.y, c.x, aSlot);       // B = c A A + b A + a I
    storageBarrier();
    product(lid, m, n, m, bSlot, m, 1u, x, n, 1u, xNext, 1.0, 0.0, 0.0, 0u);              // X' = B X
#endif
  }
#endif
  storageBarrier();
  // 3. W += dW, then each row of W0, W2 and W1 scaled to its initial norm: w / (||w|| + 1e-5) * target.
  //    A lane per row. W0, W2 rows are storage rows of their blocks, W1 rows storage columns of the
  //    transposed block; dW has w's layout, or, after Newton-Schulz on tall matrices, the block's transpose.
  let j = z % 3u;
  let h = z / 3u;
  let isW1 = j == 2u;
  let count = select(p.dh, p.df, isW1);
  let len = select(p.df, p.dh, isW1);
  let tr = p.transposed != 0u;
#if MUON
  let dBase = select(xSlot, base, NS_STEPS % 2u == 1u);
#else
  let dBase = base;
#endif
  for (var r = lid; r < count; r += WG) {
    // Element k of row r: w[wi0 + k·ws], dW at work[di0 + k·ds].
    var wi0 = base + r * p.df;
    var ws = 1u;
    var di0 = select(dBase + r * p.df, dBase + r, tr);
    var ds = select(1u, p.dh, tr);
    var t = h * (2u * p.dh + p.df) + j * p.dh + r;
    if (isW1) {
      wi0 = base + r;
      ws = p.df;
      di0 = select(dBase + r, dBase + r * p.dh, tr);
      ds = select(p.df, 1u, tr);
      t = h * (2u * p.dh + p.df) + 2u * p.dh + r;
    }
    var sq = 0.0;
    for (var k = 0u; k < len; k++) {
      let v = w[wi0 + k * ws] + ld(di0 + k * ds);
      w[wi0 + k * ws] = v;
      sq = fma(v, v, sq);
    }
    let scale = targetNorm[t] / (sqrt(sq) + 1e-5);
    for (var k = 0u; k < len; k++) { w[wi0 + k * ws] *= scale; }
  }
}
#endif
