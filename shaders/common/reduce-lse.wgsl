// A workgroup reduction of online-softmax pairs (m, s), s = Σ exp(x − m) over the values a lane saw
// with m their max: the merged pair rescales both sums to the larger max. Same halving tree, barriers
// and uniform result as reduce.wgsl, whose workgroup array it reuses: include reduce.wgsl first.
// A lane that saw nothing passes (lowest finite f32, 0), which merges away (its exp underflows to 0).

fn lseMerge(a: vec2f, b: vec2f) -> vec2f {
  let m = max(a.x, b.x);
  return vec2f(m, a.y * exp(a.x - m) + b.y * exp(b.x - m));
}

fn wgLse(lid: u32, v: vec2f) -> vec2f {
  wgRed2f[lid] = v;
  for (var s = wgHalf(); s > 0u; s >>= 1u) {
    workgroupBarrier();
    if (lid < s) { wgRed2f[lid] = lseMerge(wgRed2f[lid], wgRed2f[lid + s]); }
  }
  return workgroupUniformLoad(&wgRed2f[0]);
}
