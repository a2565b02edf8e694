// The elementwise part of the SwiGLU MLP backward (src/gpu/ops/swiglu-backward.ts lays out the matmuls;
// CPU twin swigluBackward in src/reference/e2e/backward.ts). For y = (silu(x W1^T) ⊙ (x W3^T)) W2^T with
// u = x W1^T, g = x W3^T (side by side in one [rows, 2f] buffer) and dm = dy W2 [rows, f], per hidden
// element, in place:
//   u  → du = dm ⊙ g ⊙ silu'(u),   silu'(u) = σ(u) (1 + u (1 − σ(u)))
//   g  → dg = dm ⊙ silu(u)
//   dm → m  = silu(u) ⊙ g           (the hidden activation, for dW2 = dy^T m)
// Each invocation reads its three values before writing any, so in place is safe.
struct Params { count: u32, f: u32, _b: u32, _c: u32 }

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> ug: array<f32>;
@group(0) @binding(2) var<storage, read_write> hm: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= p.count) { return; }
  let iu = (i / p.f) * 2u * p.f + i % p.f;
  let u = ug[iu];
  let g = ug[iu + p.f];
  let dm = hm[i];
  let s = 1.0 / (1.0 + exp(-u));
  let su = u * s;
  ug[iu] = dm * g * (s * (1.0 + u * (1.0 - s)));
  ug[iu + p.f] = dm * su;
  hm[i] = su * g;
}
