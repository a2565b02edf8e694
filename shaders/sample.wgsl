// Token sampling in one workgroup, so only the chosen id (4 bytes) is ever read back. Semantics, defined
// in src/reference/sampling.ts (the CPU twin): greedy argmax (lowest index on ties), or temperature
// softmax restricted by top-k then top-p (both value thresholds, ties kept together), drawn with a
// counter-based hash of (seed, step) as the first kept token in index order whose cumulative weight
// exceeds u * keptMass.
//
// Thresholds are found by bisection over a u32 order key of f32 (unsigned key order = numeric order),
// one bit per step from the top: the top-k threshold is the largest key t with count{key >= t} >= k,
// exact since counts are integers; the top-p threshold the largest t with mass{key >= t} >= topP *
// total, with f32 masses. When the top-k set is small it is first compacted, in index order, into
// workgroup memory so the top-p steps and the draw do not rescan the vocabulary.
//
// Control flow around every reduction depends only on uniforms or on workgroupUniformLoad results, as
// WGSL's uniformity rules require for barriers.

struct Params {
  n: u32,        // vocabulary size V
  offset: u32,   // first logit, in elements
  flags: u32,    // SAMPLE | TOP_P
  topK: u32,     // 0 = off (the host also maps k >= V to 0)
  invT: f32,     // 1 / temperature, rounded to f32 on the host
  topP: f32,
  seed: u32,
  step: u32,
  // Always 0. Loop bounds shifted by it are opaque to the compiler, which keeps it from unrolling the
  // loops that hold barriers: unrolled, lavapipe's cold compile of this shader took 3-7 s (each barrier
  // splits the shader), looped under 1 s. Real GPUs lose nothing measurable on 8- and 32-trip loops.
  // The op compiles this shader with OPAQUE_LOOPS, so reduce.wgsl's reductions use it too.
  zero: u32,
  _a: u32,
  _b: u32,
  _c: u32,
}

const WG: u32 = 256u;
#include "reduce.wgsl"
const CAP: u32 = 1024u;            // compacted top-k set size limit (8 KiB of keys and indices)
const NONE: u32 = 0xffffffffu;
const KEY_NEG_INF: u32 = 0x007fffffu;
const KEY_POS_INF: u32 = 0xff800000u;
const SAMPLE: u32 = 1u;
const TOP_P: u32 = 2u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
// [id, hash, top-k threshold key, final threshold key]; the engine reads only the id.
@group(0) @binding(2) var<storage, read_write> result: array<u32, 4>;

var<workgroup> scanTotal: f32;
var<workgroup> cKey: array<u32, CAP>;
var<workgroup> cIdx: array<u32, CAP>;

// NaN ranks as -inf (never drawn) and -0 as +0 (ties with it), matching the reference's numeric compare.
fn orderKey(x: f32) -> u32 {
  var b = bitcast<u32>(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) { b = 0xff800000u; }
  if (b == 0x80000000u) { b = 0u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn keyValue(k: u32) -> f32 {
  return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

fn logitKey(i: u32) -> u32 { return orderKey(logits[p.offset + i]); }

// Float arithmetic only on finite values: WGSL lets implementations assume no infinities.
fn weight(k: u32, vmax: f32) -> f32 {
  if (k <= KEY_NEG_INF) { return 0.0; }
  return exp((keyValue(k) - vmax) * p.invT);
}

// The list the top-p steps and the draw walk: the compacted top-k set, or the whole vocabulary.
fn listKey(j: u32, compact: bool) -> u32 {
  if (compact) { return cKey[j]; }
  return logitKey(j);
}

fn listIndex(j: u32, compact: bool) -> u32 {
  if (compact) { return cIdx[j]; }
  return j;
}

fn pcgHash(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}

// Exclusive prefix sums over the invocations' values, in invocation order, in reduce.wgsl's arrays. A
// sequential pass by one invocation keeps the f32 summation order fixed and simple; 256 adds are noise
// next to the V-long scans.
fn scanU(lid: u32, v: u32) -> u32 {
  wgRedU[lid] = v;
  workgroupBarrier();
  if (lid == 0u) {
    var run = 0u;
    for (var t = 0u; t < WG; t++) { let x = wgRedU[t]; wgRedU[t] = run; run += x; }
  }
  workgroupBarrier();
  return wgRedU[lid];
}

fn scanF(lid: u32, v: f32) -> f32 {
  wgRedF[lid] = v;
  workgroupBarrier();
  if (lid == 0u) {
    var run = 0.0;
    for (var t = 0u; t < WG; t++) { let x = wgRedF[t]; wgRedF[t] = run; run += x; }
    scanTotal = run;
  }
  workgroupBarrier();
  return wgRedF[lid];
}

fn massAbove(lid: u32, t: u32, count: u32, compact: bool, vmax: f32) -> f32 {
  var s = 0.0;
  for (var j = lid; j < count; j += WG) {
    let k = listKey(j, compact);
    if (k >= t) { s += weight(k, vmax); }
  }
  return wgSum(lid, s);
}

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32) {
  let n = p.n;
  let h = pcgHash(pcgHash(p.seed) + p.step);

  // Every key is >= KEY_NEG_INF > 0, so (0, NONE) loses to any element; a strict > keeps the lowest
  // index within an invocation's ascending stride.
  var best = vec2u(0u, NONE);
  for (var i = lid; i < n; i += WG) {
    let k = logitKey(i);
    if (k > best.x) { best = vec2u(k, i); }
  }
  best = wgArgmax(lid, best);
  let maxKey = best.x;
  if ((p.flags & SAMPLE) == 0u || maxKey <= KEY_NEG_INF || maxKey >= KEY_POS_INF) {
    if (lid == 0u) { result = array<u32, 4>(best.y, h, maxKey, maxKey); }
    return;
  }
  let vmax = keyValue(maxKey);

  // Top-k threshold. Candidates above the max hold no element, so they are rejected without a scan.
  var tk = 0u;
  var kept = n;
  if (p.topK != 0u) {
    for (var bit = 0x80000000u >> p.zero; bit != 0u; bit >>= 1u) {
      let cand = tk | bit;
      if (cand <= maxKey) {
        var c = 0u;
        for (var i = lid; i < n; i += WG) { c += select(0u, 1u, logitKey(i) >= cand); }
        let total = wgSumU(lid, c);
        if (total >= p.topK) { tk = cand; kept = total; }
      }
    }
  }

  // Compaction keeps index order: each invocation owns a contiguous chunk and writes its kept
  // elements at its exclusive prefix count.
  let compact = p.topK != 0u && kept <= CAP;
  var count = n;
  if (compact) {
    let chunk = (n + WG - 1u) / WG;
    let lo = min(n, lid * chunk);
    let hi = min(n, lo + chunk);
    var c = 0u;
    for (var i = lo; i < hi; i++) { c += select(0u, 1u, logitKey(i) >= tk); }
    var o = scanU(lid, c);
    for (var i = lo; i < hi; i++) {
      let k = logitKey(i);
      if (k >= tk) { cKey[o] = k; cIdx[o] = i; o++; }
    }
    workgroupBarrier();
    count = kept;
  }

  // Top-p threshold over the top-k set. A candidate at or below tk covers the whole set (mass = total,
  // which passes since topP <= 1); one above the max covers nothing (mass 0 fails since total >= 1).
  var thr = tk;
  if ((p.flags & TOP_P) != 0u) {
    let total = massAbove(lid, tk, count, compact, vmax);
    let goal = p.topP * total;
    var tp = 0u;
    for (var bit = 0x80000000u >> p.zero; bit != 0u; bit >>= 1u) {
      let cand = tp | bit;
      if (cand <= tk) {
        tp = cand;
      } else if (cand <= maxKey) {
        if (massAbove(lid, cand, count, compact, vmax) >= goal) { tp = cand; }
      }
    }
    thr = max(tp, tk);
  }

  // Draw. Contiguous chunks make invocation order index order, so one exclusive scan of the chunk sums
  // gives every invocation the cumulative weight before its chunk.
  let chunk = (count + WG - 1u) / WG;
  let lo = min(count, lid * chunk);
  let hi = min(count, lo + chunk);
  var s = 0.0;
  for (var j = lo; j < hi; j++) {
    let k = listKey(j, compact);
    if (k >= thr) { s += weight(k, vmax); }
  }
  var cum = scanF(lid, s);
  let drawAt = f32(h >> 8u) * (1.0 / 16777216.0) * scanTotal;
  // First crossing in this chunk, else the last positive-weight kept token (the rounding fallback; the
  // max logit has weight 1, so one exists). Chunks past the crossing may cross at their first token,
  // hence the minimum over invocations.
  var found = NONE;
  var last = 0u;
  for (var j = lo; j < hi; j++) {
    let k = listKey(j, compact);
    if (k >= thr) {
      let w = weight(k, vmax);
      if (w > 0.0) {
        cum += w;
        last = listIndex(j, compact);
        if (cum > drawAt) { found = last; break; }
      }
    }
  }
  let pick = wgMinMax(lid, vec2u(found, last));
  if (lid == 0u) { result = array<u32, 4>(select(pick.x, pick.y, pick.x == NONE), h, tk, thr); }
}
