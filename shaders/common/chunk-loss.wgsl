// The chunk's mean loss from the cross entropy's loss buffer (`loss`: [#valid, share_0 .. share_{rows-1}],
// shaders/e2e-cross-entropy.wgsl): the shares' sum in row order, by one invocation, so every reader
// (before and after a step) adds the same way. The includer declares `loss`.
fn chunkLoss(rows: u32) -> f32 {
  var s = 0.0;
  for (var r = 0u; r < rows; r++) { s += loss[1u + r]; }
  return s;
}
