// cos and sin of a RoPE angle pos·freq that stay accurate at any u32 position (TTT-E2E's interleaved
// RoPE, shaders/e2e-rope.wgsl; any kernel that ropes on the fly may include this too).
//
// An f32 product pos·freq is the angle to ~u·pos·freq: 8e-3 rad at position 1.3e5 for freq 1, and
// cos/sin of a large f32 argument are looser still. Here the angle is kept in *turns* as a 64-bit fixed
// point fraction instead: the host computes, per frequency, F = frac(freq / 2π)·2^64 (two u32 words,
// src/gpu/ops/e2e-rope.ts ropeTurnTable), and pos·F mod 2^64 is exact in u32 arithmetic: its high word
// is the angle mod 2π in units of 2π·2^-32, its low word the next 32 bits. No integer part is ever
// formed, so the reduction costs nothing in accuracy whatever the position. The host's F is within
// ~2^-55 turns of the f64 freq/2π, so the angle is within pos·2^-55 turns (4e-12 rad at 1.3e5).
//
// The fraction is split into a quadrant q (its top two bits, rounded) and a remainder r in
// [-1/8, 1/8] turns, so the polynomials only ever see |x| <= π/4: sin to x^9, cos to x^10 (Taylor; the
// first dropped terms are 2e-9 and 1e-10 there), evaluated in f32, then turned by q quarter turns, all
// independent of the driver's sin/cos (Vulkan only promises 2^-11 absolute for those).

// High word of the 64-bit product a·b, from 16-bit halves (no intermediate overflows: see the sums).
fn ropeMulHi(a: u32, b: u32) -> u32 {
  let a0 = a & 0xffffu;
  let a1 = a >> 16u;
  let b0 = b & 0xffffu;
  let b1 = b >> 16u;
  let ll = a0 * b0;
  let hl = a1 * b0;
  let lh = a0 * b1;
  let hh = a1 * b1;
  // <= (2^16 - 1) + (2^16 - 1) + (2^16 - 1)^2 = 2^32 - 1.
  let mid = (ll >> 16u) + (hl & 0xffffu) + lh;
  return hh + (hl >> 16u) + (mid >> 16u);
}

// (cos, sin) of the angle pos·freq, with f = (high, low) words of F = frac(freq / 2π)·2^64.
fn ropeCosSin(pos: u32, f: vec2u) -> vec2f {
  // pos·F mod 2^64 = (hi, lo): wrapping u32 products are exact mod 2^32.
  let hi = pos * f.x + ropeMulHi(pos, f.y);
  let lo = pos * f.y;
  // Nearest quarter turn q, and what is left of the high word: a signed value in [-2^29, 2^29).
  let q = (hi + 0x20000000u) >> 30u;
  let rem = bitcast<i32>(hi - (q << 30u));
  // x = 2π·(rem + lo·2^-32)·2^-32 rad, |x| <= π/4.
  let x = (f32(rem) + f32(lo) * 0x1p-32f) * 1.46291808e-9;
  let x2 = x * x;
  let s = x * (1.0 + x2 * (-1.6666667e-1 + x2 * (8.3333333e-3 + x2 * (-1.9841270e-4 + x2 * 2.7557319e-6))));
  let c = 1.0 + x2 * (-0.5 + x2 * (4.1666667e-2 + x2 * (-1.3888889e-3 + x2 * (2.4801587e-5 + x2 * -2.7557319e-7))));
  switch q {
    case 0u: { return vec2f(c, s); }
    case 1u: { return vec2f(-s, c); }
    case 2u: { return vec2f(-c, -s); }
    default: { return vec2f(s, -c); }
  }
}
