/**
 * Per-token log-probabilities, the CPU twin of shaders/token-logprobs.wgsl (f64 arithmetic over the f32
 * logits): the value for token t_r is log softmax(previous row)[t_r], the previous row being row r − 1
 * of the block's logits, or the carried row for r = 0; NaN where there is none.
 */
export function tokenLogprobs(logits: Float32Array, V: number, tokens: readonly number[], carry: Float32Array | null): Float64Array {
  const out = new Float64Array(tokens.length);
  for (let r = 0; r < tokens.length; r++) {
    const row = r === 0 ? carry : logits.subarray((r - 1) * V, r * V);
    if (!row) {
      out[r] = NaN;
      continue;
    }
    let m = -Infinity;
    for (let j = 0; j < V; j++) m = Math.max(m, row[j]);
    let s = 0;
    for (let j = 0; j < V; j++) s += Math.exp(row[j] - m);
    out[r] = row[tokens[r]] - (m + Math.log(s));
  }
  return out;
}
