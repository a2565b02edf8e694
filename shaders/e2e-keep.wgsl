// TTT-E2E's pending chunk: what a chunk's update needs that no later block recomputes. A block keeps its
// rows' h_pre (the input of the first TTT block) and token ids at their place in the chunk (row
// pos0 mod B + r); the update of chunk c runs at the start of the block holding position (c + 1)B,
// whose first token is the chunk's last target: the host writes it after the chunk's own tokens (slot
// B, which KEEP never writes), so the loss reads targets[1 .. B] in one piece. KEEP runs after the
// update: the block's rows overwrite the chunk the update reads.
#include "block.wgsl"

struct Params { d: u32, B: u32, _a: u32, _b: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> blk: Block;

#if KEEP
@group(0) @binding(2) var<storage, read> x: array<f32>;        // [rows, d]: the block's h_pre rows
@group(0) @binding(3) var<storage, read> tokens: array<u32>;   // [rows]
@group(0) @binding(4) var<storage, read_write> hPre: array<f32>;     // [B, d]
@group(0) @binding(5) var<storage, read_write> pending: array<u32>;  // [B + 1]

@compute @workgroup_size(64)
fn keep(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= blk.rows * p.d) { return; }
  let r = i / p.d;
  let slot = blk.pos0 % p.B + r;
  hPre[slot * p.d + i % p.d] = x[i];
  if (i % p.d == 0u) { pending[slot] = tokens[r]; }
}
#endif

#if COPY
// The kept h rows into a working buffer (rows: the update's chunk uniform, B of them), for an update
// that adds a sublayer's output to them (the stream the loss reads).
@group(0) @binding(2) var<storage, read> kept: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64)
fn copyRows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * 64u;
  if (i >= blk.rows * p.d) { return; }
  dst[i] = kept[i];
}
#endif
