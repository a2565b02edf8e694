// Workgroup reductions through workgroup memory, one value per invocation, as a halving tree (so every
// f32 sum adds in the same fixed order on every device). The including shader declares
// `const WG: u32`, its workgroup size (a power of two), and calls these only from workgroup-uniform
// control flow, since they hold barriers. Each returns one value, the same to every invocation (uniform,
// through workgroupUniformLoad), and ends on that load's barrier, so the caller may reduce again at once.
// An array below takes workgroup memory only in the entry points that use it.
//
// With the OPAQUE_LOOPS define the includer's uniform `p` must have a field `zero: u32` that is always 0:
// loop bounds shifted by it keep the compiler from unrolling the loops that hold barriers (see
// sample.wgsl's Params for why that matters).

var<workgroup> wgRedF: array<f32, WG>;
var<workgroup> wgRedU: array<u32, WG>;
var<workgroup> wgRed2f: array<vec2f, WG>;
var<workgroup> wgRed2u: array<vec2u, WG>;
var<workgroup> wgRed4f: array<vec4f, WG>;

// The first stride of the tree.
fn wgHalf() -> u32 {
#if OPAQUE_LOOPS
  return (WG / 2u) >> p.zero;
#else
  return WG / 2u;
#endif
}

fn wgSum(lid: u32, v: f32) -> f32 {
  wgRedF[lid] = v;
  for (var s = wgHalf(); s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { wgRedF[lid] += wgRedF[lid + s]; }
  }
  return workgroupUniformLoad(&wgRedF[0]);
}

// Two sums at once (componentwise; the same tree as wgSum).
fn wgSum2f(lid: u32, v: vec2f) -> vec2f {
  wgRed2f[lid] = v;
  for (var s = wgHalf(); s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { wgRed2f[lid] += wgRed2f[lid + s]; }
  }
  return workgroupUniformLoad(&wgRed2f[0]);
}

// Four sums at once (componentwise; the same tree as wgSum).
fn wgSum4f(lid: u32, v: vec4f) -> vec4f {
  wgRed4f[lid] = v;
  for (var s = wgHalf(); s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { wgRed4f[lid] += wgRed4f[lid + s]; }
  }
  return workgroupUniformLoad(&wgRed4f[0]);
}

fn wgSumU(lid: u32, v: u32) -> u32 {
  wgRedU[lid] = v;
  for (var s = wgHalf(); s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { wgRedU[lid] += wgRedU[lid + s]; }
  }
  return workgroupUniformLoad(&wgRedU[0]);
}

// (largest x, lowest y among it): an argmax of keys x at indices y.
fn wgArgmax(lid: u32, v: vec2u) -> vec2u {
  wgRed2u[lid] = v;
  for (var s = wgHalf(); s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) {
      let a = wgRed2u[lid];
      let b = wgRed2u[lid + s];
      if (b.x > a.x || (b.x == a.x && b.y < a.y)) { wgRed2u[lid] = b; }
    }
  }
  return workgroupUniformLoad(&wgRed2u[0]);
}

// (smallest x, largest y).
fn wgMinMax(lid: u32, v: vec2u) -> vec2u {
  wgRed2u[lid] = v;
  for (var s = wgHalf(); s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { wgRed2u[lid] = vec2u(min(wgRed2u[lid].x, wgRed2u[lid + s].x), max(wgRed2u[lid].y, wgRed2u[lid + s].y)); }
  }
  return workgroupUniformLoad(&wgRed2u[0]);
}
