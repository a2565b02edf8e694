/**
 * How a feed is cut into blocks (one command buffer each): at most `maxRows` tokens, and never across a
 * chunk boundary, so a block that completes a chunk can record the chunk's update right after its own
 * apply, and a prompt that ends mid-chunk leaves its tail pending. Chunks are aligned to absolute
 * positions: chunk c is [cC, (c+1)C).
 */
export interface BlockPlan {
  /** Tokens in the block. */
  readonly rows: number;
  /** Absolute position of its first token. */
  readonly pos0: number;
  /** The block's last token completes a chunk. */
  readonly endsChunk: boolean;
}

export class BlockPlanner {
  /** `chunkSize` null: the family has no chunks (blocks are only capped by maxRows). */
  constructor(readonly maxRows: number, readonly chunkSize: number | null) {
    if (!Number.isInteger(maxRows) || maxRows < 1) throw new RangeError(`maxRows must be a positive integer, got ${maxRows}`);
    if (chunkSize !== null && (!Number.isInteger(chunkSize) || chunkSize < 1)) throw new RangeError(`chunkSize must be a positive integer, got ${chunkSize}`);
  }

  /** The next block of a feed at `pos0` with `remaining` tokens left. */
  next(pos0: number, remaining: number): BlockPlan {
    let rows = Math.min(remaining, this.maxRows);
    const C = this.chunkSize;
    if (C !== null) rows = Math.min(rows, C - (pos0 % C));
    return { rows, pos0, endsChunk: C !== null && (pos0 + rows) % C === 0 };
  }

  /** Every block of a feed of `count` tokens starting at `pos0`. */
  *blocks(pos0: number, count: number): Generator<BlockPlan> {
    for (let done = 0; done < count; ) {
      const b = this.next(pos0 + done, count - done);
      yield b;
      done += b.rows;
    }
  }
}
