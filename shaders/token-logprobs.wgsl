// Log-probability of each fed token under the model's distribution at the position before it, so that
// perplexity needs 4 bytes per token read back instead of a row of logits. The CPU twin is
// src/reference/token-logprobs.ts.
//
// A block's rows r = 0..rows-1 hold tokens t_r; the head wrote row r's logits (the distribution of
// t_{r+1}) at logits[r·V]. Token t_0's distribution is the previous block's last row, which `keep`
// copied into `carry` at the end of that block: the value for row r reads row r − 1, or the carry for
// r = 0. An entry with no distribution before it (position 0, or a carry the engine knows is stale)
// is NaN.
//
// One invocation per token, each walking its row once with an online max/sum (no workgroup memory and
// no barriers: a row is V floats and there are at most a block's rows; the CPU emulators run this shape
// fastest, and on a GPU it is a small fraction of the head that produced the row).

struct Params {
  V: u32,
  rows: u32,
  carryValid: u32, // 1: `carry` holds the distribution of t_0
  keepRow: u32,    // the logits row `keep` copies into the carry (the block's last row as the head laid it out)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
@group(0) @binding(3) var<storage, read_write> carry: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn logitAt(r: u32, j: u32) -> f32 {
  if (r == 0u) { return carry[j]; }
  return logits[(r - 1u) * p.V + j];
}

@compute @workgroup_size(64)
fn logprobs(@builtin(global_invocation_id) gid: vec3u) {
  let r = gid.x;
  if (r >= p.rows) { return; }
  if (r == 0u && p.carryValid == 0u) {
    // A quiet NaN. WGSL refuses NaN as a constant expression; carryValid is 0 here and not constant.
    out[r] = bitcast<f32>(0x7fc00000u + p.carryValid);
    return;
  }
  var m = -3.4028234e38;
  var s = 0.0;
  for (var j = 0u; j < p.V; j++) {
    let x = logitAt(r, j);
    if (x > m) {
      s = s * exp(m - x) + 1.0;
      m = x;
    } else {
      s += exp(x - m);
    }
  }
  let t = tokens[r];
  out[r] = logitAt(r, t) - (m + log(s));
}

@compute @workgroup_size(64)
fn keep(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= p.V) { return; }
  carry[j] = logits[p.keepRow * p.V + j];
}
