// What the chunk update needs besides matrix products (those are matmul.wgsl launches): momentum and
// Muon's Frobenius normalisation, and the per-step matrix B = b A + a I of Newton-Schulz.
//
// The 3·Hf gradients are stored as [3Hf, dh, df] blocks (per head: dW0, dW2, dW1^T), so one batched
// launch serves them all. Muon works on X = G or G^T, whichever is wide ([m, n], m <= n): NS5 is an odd
// matrix polynomial, NS5(G^T) = NS5(G)^T, so storing dW1 transposed changes nothing but the layout.
//
// One Newton-Schulz step with constants (a, b, c), on X [m, n]:
//   A = X X^T;  B = b A + a I;  B += c A A;  X' = B X       (= a X + (b A + c A^2) X)
// Folding a X into B's diagonal lets X' be a plain product into the other ping-pong buffer.
#if PREPARE
struct Params { S: u32, dh: u32, df: u32, C: u32, P: u32, betaCol: u32, transposed: u32, _a: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
#if MOMENTUM
@group(0) @binding(2) var<storage, read> pending: array<f32>;
@group(0) @binding(3) var<storage, read_write> mom: array<f32>;
#endif
#if MUON
@group(0) @binding($B_X0) var<storage, read_write> x0: array<f32>;
#endif

const WG: u32 = 256u;
#include "reduce.wgsl"

// One workgroup per gradient matrix z (head z / 3). Momentum: dW += mean(beta of the head over the
// chunk) * M; M = dW (before Muon). Muon: X0 = dW / (||dW||_F + 1e-7), written wide.
@compute @workgroup_size(256)
fn prepare(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let z = wid.x;
  let base = z * p.S;
#if MOMENTUM
  var sb = 0.0;
  for (var i = lid; i < p.C; i += WG) { sb += pending[i * p.P + p.betaCol + z / 3u]; }
  let mbar = wgSum(lid, sb) / f32(p.C);
#endif
  var ss = 0.0;
  for (var e = lid; e < p.S; e += WG) {
    var g = grad[base + e];
#if MOMENTUM
    g += mbar * mom[base + e];
    mom[base + e] = g;
#if !MUON
    grad[base + e] = g;
#endif
#endif
    ss = fma(g, g, ss);
  }
#if MUON
  let inv = 1.0 / (sqrt(wgSum(lid, ss)) + 1e-7);
  // Each lane reads back only elements it wrote (or never wrote) above.
  for (var e = lid; e < p.S; e += WG) {
#if MOMENTUM
    let g = mom[base + e];
#else
    let g = grad[base + e];
#endif
    var dst = base + e;
    if (p.transposed != 0u) { dst = base + (e % p.df) * p.dh + e / p.df; }
    x0[dst] = g * inv;
  }
#endif
}
#endif

#if NS_STEP
struct Params { count: u32, m: u32, a: f32, b: f32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read_write> B: array<f32>;

// B = b A + a I over a batch of [m, m] matrices.
@compute @workgroup_size(64)
fn nsAffine(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * 64u;
  if (id >= p.count) { return; }
  let e = id % (p.m * p.m);
  B[id] = p.b * A[id] + select(0.0, p.a, e / p.m == e % p.m);
}
#endif
