// Causal softmax attention of a block's queries over the KV cache, flash style: each invocation owns one
// (query row, head, key split), streams its keys once with a running max m, sum l and accumulator acc[DA]
// in registers, so no score matrix is ever formed.
//
// The cache is either a ring of `ring` slots (sliding window; position p in slot p mod ring) or, for full
// attention, pages of `pageTokens` positions (one launch of `attend` per page, each binding its own K/V
// buffers). Keys of the block itself are read from qkv, not the cache, because the same launch writes
// them into the cache (split-0 invocations store their row/head's k and v): a decode step is then one
// dispatch. No slot written by a launch is read by it: in-block positions come from qkv, and the ring
// (W + maxRows - 1 slots) is too long for a new key to land on one the block's queries still see.
//
// Every launch shape (keys per page, splits, where a page's partials start) is a pure function of the
// Block uniform and static params, evaluated identically here and in src/gpu/ops/attention.ts; so no
// per-block uniform is written and blocks may be recorded back to back.
//
// When a block has more than one split in total, `attend` writes partials (m, l, acc[DA]) and `combine`
// merges them; with exactly one, `attend` writes the normalised output itself.
//
// Two shapes of `attend` (src/gpu/kernel-variant.ts): the CPU-emulator one (the default) gives each
// (row, head, split) one invocation with q and acc in registers; the GPU one (GPU_SHAPES) gives it a
// workgroup of 64 in the way of flash-decoding: q in workgroup memory, the threads across keys for the
// scores (a tile of 64 keys at a time, one key each), then across the head's dims for the weighted sum of
// V (consecutive threads read consecutive values), with the online-softmax rescale once per tile.
struct Params {
  D: u32, heads: u32, window: u32, ring: u32,        // window 0: full attention; ring 0: paged
  page: u32, pageTokens: u32, splitKeys: u32, splitRows: u32,
  scale: f32, S: u32, _b: u32, _c: u32,       // S: the row stride of qkv (3D, or 3D + the gates LaCT projects with it)
}
#include "block.wgsl"

const DA: u32 = $DA;
// Stands in for -inf (WGSL has no infinity literal); exp(NEG - x) is 0 for any real score x.
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;
// attend: qkv [rows, 3D], this page's K and V [slots, D], out [rows, D], partials.
@group(0) @binding(2) var<storage, read> qkv: array<f32>;
@group(0) @binding(3) var<storage, read_write> kc: array<f32>;
@group(0) @binding(4) var<storage, read_write> vc: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> part: array<f32>;
// combine: the same partials read-only, and out. (Resources may share a binding number as long as no
// entry point uses both.)
@group(0) @binding(2) var<storage, read> partIn: array<f32>;
@group(0) @binding(3) var<storage, read_write> outC: array<f32>;

// Lowest position any query of the block sees.
fn firstKey() -> u32 {
  if (p.window == 0u || blk.pos0 + 1u <= p.window) { return 0u; }
  return blk.pos0 + 1u - p.window;
}

// Positions [x, y) that page i contributes to this block (the ring is one page holding them all).
fn pageKeys(i: u32) -> vec2u {
  let lo = firstKey();
  let end = blk.pos0 + blk.rows;
  if (p.ring != 0u) { return vec2u(lo, end); }
  let base = i * p.pageTokens;
  let a = max(lo, base);
  let b = min(end, base + p.pageTokens);
  return vec2u(a, max(a, b));
}

// Splits of a page's n keys: ~splitKeys each, but only while rows * splits stays within splitRows, as
// many rows already fill the device and every split costs partials and a combine.
fn splitsFor(n: u32) -> u32 {
  if (n == 0u) { return 0u; }
  return min((n + p.splitKeys - 1u) / p.splitKeys, max(1u, p.splitRows / blk.rows));
}

fn splitsBefore(page: u32) -> u32 {
  var s = 0u;
  for (var k = 0u; k < page; k++) {
    let r = pageKeys(k);
    s += splitsFor(r.y - r.x);
  }
  return s;
}

fn totalSplits() -> u32 {
  if (p.ring != 0u) {
    let r = pageKeys(0u);
    return splitsFor(r.y - r.x);
  }
  return splitsBefore((blk.pos0 + blk.rows - 1u) / p.pageTokens + 1u);
}

fn cacheSlot(pos: u32) -> u32 {
  if (p.ring != 0u) { return pos % p.ring; }
  return pos - p.page * p.pageTokens;
}

// One (row, head, split) of a launch: both attend shapes number them the same way.
struct Task { head: u32, row: u32, split: u32, splits: u32, keys: vec2u }

// The task of linear id `id`, or none (splits = 0) past the launch's last.
fn taskOf(id: u32) -> Task {
  let keys = pageKeys(p.page);
  let S = splitsFor(keys.y - keys.x);
  let H = p.heads;
  if (id >= S * blk.rows * H) { return Task(0u, 0u, 0u, 0u, keys); }
  return Task(id % H, (id / H) % blk.rows, id / (H * blk.rows), S, keys);
}

// Split 0 of a row stores that row's own k and v in the cache: dims first, first + step, ... of the head.
fn storeOwnKv(k: Task, first: u32, step: u32) {
  let t = blk.pos0 + k.row;
  if (k.split != 0u || t < k.keys.x || t >= k.keys.y) { return; }
  let hOff = k.head * DA;
  let qRow = k.row * p.S;
  let dst = cacheSlot(t) * p.D + hOff;
  for (var i = first; i < DA; i += step) {
    kc[dst + i] = qkv[qRow + p.D + hOff + i];
    vc[dst + i] = qkv[qRow + 2u * p.D + hOff + i];
  }
}

// The keys [a, b) of the task's split that query t sees (its slice of the page, clipped by causality
// and the window).
fn splitKeys(k: Task, t: u32) -> vec2u {
  let chunk = (k.keys.y - k.keys.x + k.splits - 1u) / k.splits;
  var a = k.keys.x + k.split * chunk;
  let b = min(min(k.keys.y, a + chunk), t + 1u);
  if (p.window != 0u && t + 1u > p.window) { a = max(a, t + 1u - p.window); }
  return vec2u(a, b);
}

#if GPU_SHAPES
const WG: u32 = 64u;
// Dims each invocation owns in the weighted sum (DA <= 64: one or none).
const DPT: u32 = (DA + WG - 1u) / WG;
var<workgroup> qShared: array<f32, DA>;
var<workgroup> tileP: array<f32, WG>;

fn keyAt(j: u32, hOff: u32, i: u32) -> f32 {
  if (j < blk.pos0) { return kc[cacheSlot(j) * p.D + hOff + i]; }
  return qkv[(j - blk.pos0) * p.S + p.D + hOff + i];
}

fn valueAt(j: u32, hOff: u32, i: u32) -> f32 {
  if (j < blk.pos0) { return vc[cacheSlot(j) * p.D + hOff + i]; }
  return qkv[(j - blk.pos0) * p.S + 2u * p.D + hOff + i];
}

@compute @workgroup_size(64)
fn attend(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_index) tid: u32) {
  let task = taskOf(wid.x + wid.y * nwg.x);  // one workgroup per (split, row, head)
  if (task.splits == 0u) { return; }  // workgroup-uniform
  let head = task.head;
  let row = task.row;
  let split = task.split;
  let H = p.heads;
  let t = blk.pos0 + row;
  let D = p.D;
  let hOff = head * DA;
  let qRow = row * p.S;
  storeOwnKv(task, tid, WG);
  for (var i = tid; i < DA; i += WG) { qShared[i] = qkv[qRow + hOff + i]; }
  workgroupBarrier();
  let ab = splitKeys(task, t);
  let a = ab.x;
  let b = ab.y;

  var acc: array<f32, DPT>;
  var m = NEG;
  var l = 0.0;
  for (var j0 = a; j0 < b; j0 += WG) {
    let j = j0 + tid;
    var s = NEG;
    if (j < b) {
      var dotv = 0.0;
      for (var i = 0u; i < DA; i++) { dotv += qShared[i] * keyAt(j, hOff, i); }
      s = dotv * p.scale;
    }
    tileP[tid] = s;
    workgroupBarrier();
    var tileMax = NEG;
    for (var u = 0u; u < WG; u++) { tileMax = max(tileMax, tileP[u]); }
    let mNew = max(m, tileMax);
    workgroupBarrier();
    tileP[tid] = select(0.0, exp(s - mNew), j < b);
    workgroupBarrier();
    let c = exp(m - mNew);
    for (var d = 0u; d < DPT; d++) { acc[d] *= c; }
    var tileSum = 0.0;
    let count = min(WG, b - j0);
    for (var u = 0u; u < count; u++) {
      let w = tileP[u];
      tileSum += w;
      for (var d = 0u; d < DPT; d++) {
        let i = tid + d * WG;
        if (i < DA) { acc[d] += w * valueAt(j0 + u, hOff, i); }
      }
    }
    l = l * c + tileSum;
    m = mNew;
    workgroupBarrier();
  }

  let T = totalSplits();
  if (T == 1u) {
    let o = row * D + hOff;
    for (var d = 0u; d < DPT; d++) {
      let i = tid + d * WG;
      if (i < DA) { out[o + i] = acc[d] / l; }
    }
    return;
  }
  let slot = ((row * H + head) * T + splitsBefore(p.page) + split) * (DA + 2u);
  if (tid == 0u) {
    part[slot] = m;
    part[slot + 1u] = l;
  }
  for (var d = 0u; d < DPT; d++) {
    let i = tid + d * WG;
    if (i < DA) { part[slot + 2u + i] = acc[d]; }
  }
}

#if TILE
// The GPU prefill shape: a workgroup per (tile of BQ query rows, head, split), flash-attention style.
// Q of the tile stays in workgroup memory; K and V come through it BKV keys at a time, each tile read
// once for all BQ rows (not once per row); per row a running max, sum and the weighted V (64 threads, each
// owning one dim of every row) with the rescale once per K/V tile. Rows and keys outside the block, the
// split, the window or causality are masked, so a partial tile is exact.
// Tile sizes are the host's choice (src/gpu/ops/attention.ts: 16 x 16, smaller keys tiles where a large
// head dim would pass the device's workgroup storage limit).
const BQ: u32 = $BQ;
const BKV: u32 = $BKV;
var<workgroup> qTile: array<f32, BQ * DA>;
var<workgroup> kTile: array<f32, BKV * DA>;
var<workgroup> vTile: array<f32, BKV * DA>;
var<workgroup> pTile: array<f32, BQ * BKV>;
var<workgroup> rowM: array<f32, BQ>;
var<workgroup> rowL: array<f32, BQ>;
var<workgroup> rowC: array<f32, BQ>;

@compute @workgroup_size(64)
fn attendTile(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
              @builtin(local_invocation_index) tid: u32) {
  let id = wid.x + wid.y * nwg.x;  // one workgroup per (split, row tile, head)
  let keys = pageKeys(p.page);
  let n = keys.y - keys.x;
  let S = splitsFor(n);
  let H = p.heads;
  let tiles = (blk.rows + BQ - 1u) / BQ;
  if (id >= S * tiles * H) { return; }  // workgroup-uniform
  let head = id % H;
  let tile = (id / H) % tiles;
  let split = id / (H * tiles);
  let r0 = tile * BQ;
  let rEnd = min(blk.rows, r0 + BQ);
  let D = p.D;
  let hOff = head * DA;

  // Q of the tile (rows past the block are zeros); split 0 also stores the tile's k and v in the cache.
  for (var e = tid; e < BQ * DA; e += WG) {
    let r = r0 + e / DA;
    let i = e % DA;
    var q = 0.0;
    if (r < rEnd) {
      let qRow = r * p.S;
      q = qkv[qRow + hOff + i];
      let t = blk.pos0 + r;
      if (split == 0u && t >= keys.x && t < keys.y) {
        let dst = cacheSlot(t) * D + hOff + i;
        kc[dst] = qkv[qRow + D + hOff + i];
        vc[dst] = qkv[qRow + 2u * D + hOff + i];
      }
    }
    qTile[e] = q;
  }
  if (tid < BQ) {
    rowM[tid] = NEG;
    rowL[tid] = 0.0;
  }

  // The keys this split holds that any row of the tile sees.
  let chunk = (n + S - 1u) / S;
  let sa = keys.x + split * chunk;
  let sb = min(keys.y, sa + chunk);
  let tFirst = blk.pos0 + r0;
  let tLast = blk.pos0 + rEnd - 1u;
  var a = sa;
  if (p.window != 0u && tFirst + 1u > p.window) { a = max(a, tFirst + 1u - p.window); }
  let b = min(sb, tLast + 1u);

  var acc: array<array<f32, DPT>, BQ>;
  // workgroupBarrier before the loop: Q and the row state are written.
  workgroupBarrier();
  for (var j0 = a; j0 < b; j0 += BKV) {
    for (var e = tid; e < BKV * DA; e += WG) {
      let j = j0 + e / DA;
      let i = e % DA;
      var kv = vec2f(0.0);
      if (j < b) { kv = vec2f(keyAt(j, hOff, i), valueAt(j, hOff, i)); }
      kTile[e] = kv.x;
      vTile[e] = kv.y;
    }
    workgroupBarrier();
    // Scores: BQ x BKV = 256, four per invocation.
    for (var e = tid; e < BQ * BKV; e += WG) {
      let r = e / BKV;
      let u = e % BKV;
      let j = j0 + u;
      let t = blk.pos0 + r0 + r;
      var s = NEG;
      let seen = r0 + r < rEnd && j < b && j <= t && (p.window == 0u || j + p.window > t);
      if (seen) {
        var dotv = 0.0;
        for (var i = 0u; i < DA; i++) { dotv += qTile[r * DA + i] * kTile[u * DA + i]; }
        s = dotv * p.scale;
      }
      pTile[e] = s;
    }
    workgroupBarrier();
    // Per row: the new max, the rescale of what came before, the weights of this tile.
    if (tid < BQ) {
      var tileMax = NEG;
      for (var u = 0u; u < BKV; u++) { tileMax = max(tileMax, pTile[tid * BKV + u]); }
      let m = rowM[tid];
      let mNew = max(m, tileMax);
      var sum = 0.0;
      for (var u = 0u; u < BKV; u++) {
        let s = pTile[tid * BKV + u];
        // A row with nothing seen yet keeps weight 0 (exp(NEG - NEG) would be 1).
        let w = select(0.0, exp(s - mNew), s > 0.5 * NEG);
        pTile[tid * BKV + u] = w;
        sum += w;
      }
      let c = exp(m - mNew);
      rowC[tid] = c;
      rowL[tid] = rowL[tid] * c + sum;
      rowM[tid] = mNew;
    }
    workgroupBarrier();
    for (var r = 0u; r < BQ; r++) {
      let c = rowC[r];
      for (var d = 0u; d < DPT; d++) {
        let i = tid + d * WG;
        if (i < DA) {
          var v = acc[r][d] * c;
          for (var u = 0u; u < BKV; u++) { v += pTile[r * BKV + u] * vTile[u * DA + i]; }
          acc[r][d] = v;
        }
      }
    }
    workgroupBarrier();
  }

  let T = totalSplits();
  for (var r = 0u; r < BQ; r++) {
    let row = r0 + r;
    if (row >= rEnd) { break; }
    let m = rowM[r];
    let l = rowL[r];
    if (T == 1u) {
      for (var d = 0u; d < DPT; d++) {
        let i = tid + d * WG;
        if (i < DA) { out[row * D + hOff + i] = acc[r][d] / l; }
      }
    } else {
      let slot = ((row * H + head) * T + splitsBefore(p.page) + split) * (DA + 2u);
      if (tid == 0u) {
        part[slot] = m;
        part[slot + 1u] = l;
      }
      for (var d = 0u; d < DPT; d++) {
        let i = tid + d * WG;
        if (i < DA) { part[slot + 2u + i] = acc[r][d]; }
      }
    }
  }
}
#endif
#else
@compute @workgroup_size(64)
fn attend(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let task = taskOf(gid.x + gid.y * nwg.x * 64u);
  if (task.splits == 0u) { return; }
  let head = task.head;
  let row = task.row;
  let split = task.split;
  let H = p.heads;
  let t = blk.pos0 + row;
  let D = p.D;
  let hOff = head * DA;
  let qRow = row * p.S;
  storeOwnKv(task, 0u, 1u);
  let ab = splitKeys(task, t);
  let a = ab.x;
  let b = ab.y;

  var q: array<f32, DA>;
  var acc: array<f32, DA>;
  for (var i = 0u; i < DA; i++) {
    q[i] = qkv[qRow + hOff + i];
    acc[i] = 0.0;
  }
  var m = NEG;
  var l = 0.0;
  for (var j = a; j < b; j++) {
    let cached = j < blk.pos0;
    var kOff: u32;
    if (cached) { kOff = cacheSlot(j) * D + hOff; } else { kOff = (j - blk.pos0) * p.S + D + hOff; }
    var s = 0.0;
    if (cached) {
      for (var i = 0u; i < DA; i++) { s += q[i] * kc[kOff + i]; }
    } else {
      for (var i = 0u; i < DA; i++) { s += q[i] * qkv[kOff + i]; }
    }
    s *= p.scale;
    // Rescale only when the max moves: one exp per key in the common case instead of two.
    if (s > m) {
      let c = exp(m - s);
      l *= c;
      for (var i = 0u; i < DA; i++) { acc[i] *= c; }
      m = s;
    }
    let w = exp(s - m);
    l += w;
    if (cached) {
      for (var i = 0u; i < DA; i++) { acc[i] += w * vc[kOff + i]; }
    } else {
      // v sits D floats after k in the qkv row.
      for (var i = 0u; i < DA; i++) { acc[i] += w * qkv[kOff + D + i]; }
    }
  }

  let T = totalSplits();
  if (T == 1u) {
    let o = row * D + hOff;
    for (var i = 0u; i < DA; i++) { out[o + i] = acc[i] / l; }
    return;
  }
  let slot = ((row * H + head) * T + splitsBefore(p.page) + split) * (DA + 2u);
  part[slot] = m;
  part[slot + 1u] = l;
  for (var i = 0u; i < DA; i++) { part[slot + 2u + i] = acc[i]; }
}


#if ROW_BLOCK
// The CPU-emulator prefill shape: one invocation per (RB consecutive rows, head, split; RB = 16 by default,
// src/gpu/ops/attention.ts CPU_ROW_BLOCK; 1 for a decode row), walking its keys KB at a time as a small
// register-tiled GEMM: the RB x KB scores from one pass over the head's dims
// (each key value used for RB rows, each q value for KB keys), one max test and at most one rescale per
// row and tile, then the weighted sum of the KB values into each row's accumulator (each accumulator
// read and written once per tile, not once per key). The per-row shape loads every key once per row, so
// a block of 256 rows read the cache 256 times. A key outside a row's range (causality, the window,
// another split, past the split's end) is masked for that row only.
const RB: u32 = $RB;
const KB: u32 = 8u;

@compute @workgroup_size(64)
fn attendRows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let keys = pageKeys(p.page);
  let S = splitsFor(keys.y - keys.x);
  let H = p.heads;
  let groups = (blk.rows + RB - 1u) / RB;
  let id = gid.x + gid.y * nwg.x * 64u;
  if (id >= S * groups * H) { return; }
  let head = id % H;
  let r0 = ((id / H) % groups) * RB;
  let split = id / (H * groups);
  let nr = min(RB, blk.rows - r0);
  let D = p.D;
  let hOff = head * DA;

  var q: array<f32, RB * DA>;
  var acc: array<f32, RB * DA>;
  var m: array<f32, RB>;
  var l: array<f32, RB>;
  var lo: array<u32, RB>;
  var hi: array<u32, RB>;
  var a = 0xffffffffu;
  var b = 0u;
  for (var r = 0u; r < RB; r++) {
    m[r] = NEG;
    l[r] = 0.0;
    // Rows past the block's last repeat it with an empty range.
    let task = Task(head, r0 + min(r, nr - 1u), split, S, keys);
    if (r < nr) { storeOwnKv(task, 0u, 1u); }
    let ab = splitKeys(task, blk.pos0 + task.row);
    lo[r] = ab.x;
    hi[r] = select(ab.x, ab.y, r < nr);
    if (hi[r] > lo[r]) {
      a = min(a, lo[r]);
      b = max(b, hi[r]);
    }
    let qRow = task.row * p.S + hOff;
    for (var i = 0u; i < DA; i++) {
      q[r * DA + i] = qkv[qRow + i] * p.scale;
      acc[r * DA + i] = 0.0;
    }
  }

  // Tiles start at multiples of KB, whatever the rows of the invocation: a row's sums and rescales then
  // depend on its own keys alone, so it computes the same numbers in any block and as a decode row (rows
  // = 1 runs this kernel with RB = 1), as the key-by-key walk did.
  for (var j0 = a - a % KB; j0 < b; j0 += KB) {
    // Where each key of the tile lives: the cache before the block, qkv inside it. A key outside [a, b) is
    // read at the nearest one inside (always valid to read) and masked below.
    var off: array<u32, KB>;
    var cached: array<bool, KB>;
    for (var u = 0u; u < KB; u++) {
      let j = min(max(j0 + u, a), b - 1u);
      cached[u] = j < blk.pos0;
      off[u] = select((j - blk.pos0) * p.S + D + hOff, cacheSlot(j) * D + hOff, cached[u]);
    }
    var s: array<f32, RB * KB>;
    for (var e = 0u; e < RB * KB; e++) { s[e] = 0.0; }
    for (var i = 0u; i < DA; i++) {
      var kv: array<f32, KB>;
      for (var u = 0u; u < KB; u++) {
        if (cached[u]) { kv[u] = kc[off[u] + i]; } else { kv[u] = qkv[off[u] + i]; }
      }
      for (var r = 0u; r < RB; r++) {
        let qv = q[r * DA + i];
        for (var u = 0u; u < KB; u++) { s[r * KB + u] += qv * kv[u]; }
      }
    }
    var w: array<f32, RB * KB>;
    for (var r = 0u; r < RB; r++) {
      var tileMax = NEG;
      for (var u = 0u; u < KB; u++) {
        let j = j0 + u;
        let seen = j >= lo[r] && j < hi[r];
        let sr = select(NEG, s[r * KB + u], seen);
        s[r * KB + u] = sr;
        tileMax = max(tileMax, sr);
      }
      // Rescale only when the max moves: one exp per key in the common case instead of two.
      if (tileMax > m[r]) {
        let c = exp(m[r] - tileMax);
        l[r] *= c;
        for (var i = 0u; i < DA; i++) { acc[r * DA + i] *= c; }
        m[r] = tileMax;
      }
      for (var u = 0u; u < KB; u++) {
        let sr = s[r * KB + u];
        // A masked key weighs 0, also for a row that has seen nothing yet (exp(NEG - NEG) would be 1).
        let wu = select(0.0, exp(sr - m[r]), sr > 0.5 * NEG);
        w[r * KB + u] = wu;
        l[r] += wu;
      }
    }
    for (var i = 0u; i < DA; i++) {
      // v sits D floats after k (in the cache: at the same offset of the V buffer).
      var vv: array<f32, KB>;
      for (var u = 0u; u < KB; u++) {
        if (cached[u]) { vv[u] = vc[off[u] + i]; } else { vv[u] = qkv[off[u] + D + i]; }
      }
      for (var r = 0u; r < RB; r++) {
        var x = acc[r * DA + i];
        for (var u = 0u; u < KB; u++) { x += w[r * KB + u] * vv[u]; }
        acc[r * DA + i] = x;
      }
    }
  }

  let T = totalSplits();
  for (var r = 0u; r < nr; r++) {
    let row = r0 + r;
    if (T == 1u) {
      let o = row * D + hOff;
      for (var i = 0u; i < DA; i++) { out[o + i] = acc[r * DA + i] / l[r]; }
    } else {
      let slot = ((row * H + head) * T + splitsBefore(p.page) + split) * (DA + 2u);
      part[slot] = m[r];
      part[slot + 1u] = l[r];
      for (var i = 0u; i < DA; i++) { part[slot + 2u + i] = acc[r * DA + i]; }
    }
  }
}
#endif
#endif

// One invocation per output element: rescale every split's (m, l, acc) to the common max and normalise.
@compute @workgroup_size(64)
fn combine(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let id = gid.x + gid.y * nwg.x * 64u;
  let D = p.D;
  if (id >= blk.rows * D) { return; }
  let T = totalSplits();
  let row = id / D;
  let c = id % D;
  let head = c / DA;
  let i = c % DA;
  let base = (row * p.heads + head) * T;
  var M = NEG;
  for (var s = 0u; s < T; s++) { M = max(M, partIn[(base + s) * (DA + 2u)]); }
  var L = 0.0;
  var A = 0.0;
  for (var s = 0u; s < T; s++) {
    let o = (base + s) * (DA + 2u);
    let w = exp(partIn[o] - M);
    L += partIn[o + 1u] * w;
    A += partIn[o + 2u + i] * w;
  }
  outC[row * D + c] = A / L;
}
