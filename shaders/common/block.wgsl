// The per-block uniform every kernel of a forward block shares (written by src/gpu/block.ts): the block's
// token count and the absolute position of its first row. Static shapes live in each kernel's Params.
struct Block { rows: u32, pos0: u32, _a: u32, _b: u32 }
