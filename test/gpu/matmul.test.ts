import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BlockParams } from '../../src/gpu/block.ts';
import { GpuContext, type WeightStorage } from '../../src/gpu/context.ts';
import type { KernelVariant } from '../../src/gpu/kernel-variant.ts';
import { CPU_TILES, MatmulOp, ROW_TILES, vectorReadable, type MatmulSpec, type MatmulTiles } from '../../src/gpu/ops/matmul.ts';
import { f16BitsToFloat32 } from '../../src/model/safetensors.ts';
import { gaussian, rng } from '../helpers/random-model.ts';
import { hasFeature, openTestGpu, readF32, runPass, toF16Bits, upload, zeros } from '../helpers/gpu.ts';
import { openNodeGpu } from '../../src/node/webgpu.ts';
import { expectClose } from '../helpers/close.ts';

/**
 * CPU twin: the same strided definition in f64; also, per output element, the f32 rounding bound of the
 * kernel's sum. A K-term sequential fma accumulation is off by at most gamma_K·sum|a_k b_k| (gamma_K =
 * K·u/(1 - K·u), u = 2^-24), and alpha·acc, + bias, + beta·c each round once more (u of their size).
 * So |gpu - exact| <= (K + 4)·u·(|alpha|·sum|a_k b_k| + |bias| + |beta·c0|): a rigorous per-element bound.
 */
function matmulRef(s: MatmulSpec, M: number, a: ArrayLike<number>, b: ArrayLike<number>, c0: Float32Array, bias: Float32Array | null, rowsForLast = 1, extraUlps = 0): { out: Float64Array; bound: Float64Array } {
  const out = Float64Array.from(c0);
  const bound = new Float64Array(c0.length);
  const u = 2 ** -24;
  const batch = s.batch ?? 1;
  for (let z = 0; z < batch; z++) {
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < s.N; n++) {
        let acc = 0, absSum = 0;
        const am = s.lastRow ? rowsForLast - 1 : m;
        for (let k = 0; k < s.K; k++) {
          const t = a[(s.a.off ?? 0) + z * (s.a.batch ?? 0) + am * s.a.row + k * s.a.col] * b[(s.b.off ?? 0) + z * (s.b.batch ?? 0) + n * s.b.row + k * s.b.col];
          acc += t;
          absSum += Math.abs(t);
        }
        const ci = (s.c.off ?? 0) + z * (s.c.batch ?? 0) + m * s.c.row + n * s.c.col;
        let v = (s.alpha ?? 1) * acc;
        let size = Math.abs(s.alpha ?? 1) * absSum;
        if (bias) { v += bias[(s.biasOff ?? 0) + n]; size += Math.abs(bias[(s.biasOff ?? 0) + n]); }
        if ((s.beta ?? 0) !== 0) { v += (s.beta ?? 0) * c0[ci]; size += Math.abs((s.beta ?? 0) * c0[ci]); }
        out[ci] = v;
        bound[ci] = (s.K + 4 + extraUlps) * u * size;
      }
    }
  }
  return { out, bound };
}

function randn(n: number, seed: number): Float32Array {
  const g = gaussian(rng(seed));
  return Float32Array.from({ length: n }, () => g());
}

describe('the kernel variant of the test adapter', () => {
  it('lavapipe and SwiftShader get the CPU-emulator shapes unless forced', async () => {
    const { gpu, ctx } = await openTestGpu();
    expect(ctx.kernelVariant).toBe(/lavapipe|swiftshader/.test(gpu.backend) ? 'cpu' : 'gpu');
    expect(new GpuContext(gpu.device, { kernels: 'gpu' }).kernelVariant).toBe('gpu');
    expect(new GpuContext(gpu.device, { kernels: 'gpu' }).fork().kernelVariant).toBe('gpu');
    ctx.device.destroy();
  });
});

// 'gpu, no subgroups': the GPU shapes on a device opened without the subgroups feature (the GEMV's
// workgroup-tree reduction instead of subgroupAdd).
describe.each(['cpu', 'gpu', 'gpu, no subgroups'] as const)('matmul.wgsl (%s shapes) against its CPU twin', (which) => {
  const variant: KernelVariant = which === 'cpu' ? 'cpu' : 'gpu';
  let ctx: GpuContext;
  let block: BlockParams;
  beforeAll(async () => {
    if (which === 'gpu, no subgroups') {
      const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16'] });
      ctx = new GpuContext(gpu.device, { kernels: 'gpu' });
      expect(ctx.features.subgroups).toBe(false);
    } else {
      const opened = (await openTestGpu()).ctx;
      ctx = variant === opened.kernelVariant ? opened : new GpuContext(opened.device, { kernels: variant });
      if (which === 'gpu') expect(hasFeature(ctx, 'subgroups', 'the GEMV\'s subgroup reduction')).toBe(true);
    }
    expect(ctx.kernelVariant).toBe(variant);
    block = new BlockParams(ctx);
  });
  afterAll(() => ctx?.device.destroy());

  async function check(label: string, spec: MatmulSpec, sizes: { a: number; b: number; c: number }, opts: { rows?: number; tiles?: { wide: MatmulTiles; narrow: MatmulTiles }; bias?: number } = {}) {
    const a = randn(sizes.a, 1), bF = randn(sizes.b, 2), c0 = randn(sizes.c, 3);
    const bias = opts.bias ? randn(opts.bias, 4) : null;
    const gain = spec.aNorm ? randn((spec.aNorm.gainOff ?? 0) + spec.K, 5) : null;
    const w = spec.weight ?? 'f32';
    let bData: Float32Array | Uint16Array = bF;
    let bEff: ArrayLike<number> = bF;
    if (w !== 'f32') {
      const bits = toF16Bits(bF);
      bData = bits;
      bEff = Array.from(bits, f16BitsToFloat32);
    }
    const rows = opts.rows ?? 1;
    const M = spec.M === 'rows' ? rows : spec.M;
    const bufB = ctx.allocator.upload('b', 'weights', w === 'f32' ? bData : bits32(bData as Uint16Array));
    const bufC = upload(ctx, c0);
    const op = new MatmulOp(ctx, label, spec, { a: upload(ctx, a), b: bufB, c: bufC, bias: bias ? upload(ctx, bias) : undefined, gain: gain ? upload(ctx, gain) : undefined }, block, opts.tiles);
    block.write(rows, 0);
    await runPass(ctx, (pass) => op.encode(pass, rows));
    const got = await readF32(ctx, bufC, sizes.c);
    // With aGlu the kernel reads silu(g) * u (g / (1 + exp(-g)) * u, each step rounded in f32: exp within
    // 3 ulp, the add, the division and the product one each, so within 8u of the exact value per element).
    let aEff: ArrayLike<number> = spec.aGlu === undefined ? a : Float64Array.from(a, (g, i) => (i + spec.aGlu! < a.length ? g / (1 + Math.exp(-g)) * a[i + spec.aGlu!] : 0));
    let extraUlps = spec.aGlu === undefined ? 0 : 8;
    if (spec.aNorm && gain) {
      // Every row of A (unbatched, unit k stride) normalized exactly: x * gain / sqrt(mean x^2 + eps). The
      // kernel's row scale is off by the sum of squares' rounding (K/2 u, halved by the square root), the
      // division, the add and inverseSqrt (2 ulp), and the gain's product and the final scaling one each.
      const off = spec.a.off ?? 0, K = spec.K, g0 = spec.aNorm.gainOff ?? 0;
      const norm = Float64Array.from(a);
      for (let r0 = off; r0 + K <= a.length; r0 += spec.a.row) {
        let ss = 0;
        for (let k = 0; k < K; k++) ss += a[r0 + k] ** 2;
        const inv = 1 / Math.sqrt(ss / K + spec.aNorm.eps);
        for (let k = 0; k < K; k++) norm[r0 + k] = a[r0 + k] * gain[g0 + k] * inv;
      }
      aEff = norm;
      extraUlps = Math.ceil(K / 2) + 8;
    }
    const { out: want, bound } = matmulRef(spec, M, aEff, bEff, c0, bias, rows, extraUlps);
    // Elements the op does not write (outside C's strided footprint) must be c0 exactly: bound 0 there.
    return expectClose(got, want, { atol: bound, rtol: 0, label });
  }

  function bits32(h: Uint16Array): Uint16Array {
    // Packed f16 and native f16 share the same bytes: two halves per u32, padded to 4 bytes.
    const out = new Uint16Array(h.length + (h.length % 2));
    out.set(h);
    return out;
  }

  it('Linear layout (x W^T + bias), shapes off the tile grid, every weight storage', async () => {
    for (const weight of ['f32', 'f16', 'f16-packed'] as WeightStorage[]) {
      if (weight === 'f16' && !hasFeature(ctx, 'shaderF16', 'native f16 weights')) continue;
      // Off every grid: register tiles (4), GEMM tiles (64 x 64, k slices of 16), GEMV columns (4), vec4 k (4).
      for (const [M, N, K] of [[1, 37, 19], [2, 5, 3], [13, 70, 33], [64, 64, 64], [1, 70, 64], [2, 258, 36], [65, 130, 20], [130, 67, 48], [3, 9, 260]]) {
        await check(`${weight} ${M}x${N}x${K}`, { M: 'rows', N, K, a: { row: K, col: 1 }, b: { row: K, col: 1 }, c: { row: N, col: 1 }, weight }, { a: M * K, b: N * K, c: M * N }, { rows: M, bias: N });
      }
    }
  });

  it('transposed A, B and C through strides, batched, with alpha and beta (accumulate)', async () => {
    const [Bt, M, N, K] = [3, 9, 11, 7];
    // A stored [batch, K, M] (transposed), B stored [batch, K, N] (transposed), C written transposed [batch, N, M].
    await check('transposed', {
      M, N, K, batch: Bt,
      a: { batch: M * K, row: 1, col: M },
      b: { batch: N * K, row: 1, col: N },
      c: { batch: M * N, row: 1, col: M },
      alpha: 0.5, beta: -1.5,
    }, { a: Bt * M * K, b: Bt * N * K, c: Bt * M * N });
  });

  it('offsets and head-interleaved rows (the fast-weight layout [T, heads*df])', async () => {
    const [H, T, df, dh] = [2, 10, 6, 12];
    await check('heads', {
      M: T, N: dh, K: df, batch: H,
      a: { off: 0, batch: df, row: H * df, col: 1 },
      b: { batch: dh * df, row: df, col: 1 },
      c: { off: 5, batch: dh, row: H * dh, col: 1 },
    }, { a: T * H * df, b: H * dh * df, c: 5 + T * H * dh });
  });

  it('last-row mode reads only the block\'s final row (the prefill LM head)', async () => {
    const [rows, N, K] = [6, 21, 8];
    await check('last row', { M: 1, N, K, lastRow: true, a: { row: K, col: 1 }, b: { row: K, col: 1 }, c: { row: N, col: 1 } }, { a: rows * K, b: N * K, c: N }, { rows });
  });

  it('vector loads: A and B each vectorised or not, as their strides allow', async () => {
    // K = 32 with A's rows padded to 36 (vec4-readable) or 35 (not), B's to 32 or 33.
    for (const [aRow, bRow] of [[36, 32], [35, 32], [36, 33], [35, 33]]) {
      for (const M of [1, 2, 70]) {
        const [N, K] = [21, 32];
        expect(vectorReadable({ row: aRow, col: 1 }, K)).toBe(aRow % 4 === 0);
        await check(`rows ${aRow}/${bRow} M ${M}`, { M: 'rows', N, K, a: { row: aRow, col: 1 }, b: { row: bRow, col: 1 }, c: { row: N, col: 1 }, weight: 'f16-packed' }, { a: M * aRow, b: N * bRow, c: M * N }, { rows: M, bias: N });
      }
    }
  });

  it('SwiGLU fused into the loads of A (aGlu: [g | u] rows, the down projection of the block MLP)', async () => {
    for (const weight of ['f32', 'f16-packed'] as WeightStorage[]) {
      for (const [M, N, K] of [[1, 37, 19], [2, 21, 32], [70, 33, 36]]) {
        await check(`glu ${weight} ${M}x${N}x${K}`, { M: 'rows', N, K, a: { row: 2 * K, col: 1 }, b: { row: K, col: 1 }, c: { row: N, col: 1 }, beta: 1, weight, aGlu: K }, { a: M * 2 * K, b: N * K, c: M * N }, { rows: M });
      }
    }
  });

  it('RMSNorm fused into the loads of A (aNorm: the norm before a projection), off every tile grid', async () => {
    for (const weight of ['f32', 'f16-packed'] as WeightStorage[]) {
      // Vector-readable rows (K % 4 = 0) and not; the decode rows (1, 2), a prefill block, the last row.
      for (const [M, N, K, aRow] of [[1, 37, 19, 19], [2, 21, 32, 32], [1, 70, 256, 260], [70, 33, 36, 36], [70, 67, 48, 51], [5, 9, 260, 260]]) {
        await check(`norm ${weight} ${M}x${N}x${K}`, { M: 'rows', N, K, a: { row: aRow, col: 1 }, b: { row: K, col: 1 }, c: { row: N, col: 1 }, beta: 1, weight, aNorm: { eps: 1e-5, gainOff: 3 } }, { a: M * aRow, b: N * K, c: M * N }, { rows: M, bias: N });
      }
    }
    await check('norm last row', { M: 1, N: 21, K: 8, lastRow: true, a: { row: 8, col: 1 }, b: { row: 8, col: 1 }, c: { row: 21, col: 1 }, aNorm: { eps: 1e-6 } }, { a: 6 * 8, b: 21 * 8, c: 21 }, { rows: 6 });
    await check('norm, other tiles', { M: 'rows', N: 45, K: 17, a: { row: 17, col: 1 }, b: { row: 17, col: 1 }, c: { row: 45, col: 1 }, aNorm: { eps: 1e-5 } }, { a: 23 * 17, b: 45 * 17, c: 23 * 45 }, { rows: 23, tiles: { wide: { tm: 2, tn: 8, wgx: 4, wgy: 16 }, narrow: ROW_TILES } });
  });

  /**
   * aResid: the stream x' = resid + postGain · s / rms(s) built in the loads, normed by aNorm, and (when
   * written) stored in residOut by the first column tile; checked against the same definition in f64.
   */
  async function checkResid(label: string, M: number, N: number, K: number, aRow: number, rRow: number, opts: { write: boolean; lastRow?: boolean; rows?: number; weight?: WeightStorage; tiles?: { wide: MatmulTiles; narrow: MatmulTiles } }) {
    const rows = opts.rows ?? M, eps = 1e-5, Mo = opts.lastRow ? 1 : M;
    const sub = randn(rows * aRow, 11), x = randn(rows * rRow, 12), gain = randn(K, 13), post = randn(K, 14), bF = randn(N * K, 15);
    const out0 = randn(rows * rRow, 16), c0 = randn(Mo * N, 17);
    const weight = opts.weight ?? 'f32';
    const bEff = weight === 'f32' ? bF : Float32Array.from(toF16Bits(bF), f16BitsToFloat32);
    const bufB = ctx.allocator.upload('b', 'weights', weight === 'f32' ? bF : bits32(toF16Bits(bF)));
    const bufC = upload(ctx, c0), bufOut = upload(ctx, out0);
    const spec: MatmulSpec = { M: opts.lastRow ? 1 : 'rows', N, K, lastRow: opts.lastRow, a: { row: aRow, col: 1 }, b: { row: K, col: 1 }, c: { row: N, col: 1 }, weight, aNorm: { eps }, aResid: { row: rRow, write: opts.write } };
    const op = new MatmulOp(ctx, label, spec, { a: upload(ctx, sub), b: bufB, c: bufC, gain: upload(ctx, gain), resid: upload(ctx, x), postGain: upload(ctx, post), residOut: bufOut }, block, opts.tiles);
    block.write(rows, 0);
    await runPass(ctx, (pass) => op.encode(pass, rows));
    const got = await readF32(ctx, bufC, Mo * N), gotOut = await readF32(ctx, bufOut, rows * rRow);
    const wantC = new Float64Array(Mo * N), boundC = new Float64Array(Mo * N);
    const wantOut = Float64Array.from(out0), boundOut = new Float64Array(rows * rRow);
    const u = 2 ** -24;
    for (let mo = 0; mo < Mo; mo++) {
      const m = opts.lastRow ? rows - 1 : mo;
      let s2 = 0;
      for (let k = 0; k < K; k++) s2 += sub[m * aRow + k] ** 2;
      const ps = 1 / Math.sqrt(s2 / K + eps);
      const xs = Array.from({ length: K }, (_, k) => x[m * rRow + k] + post[k] * sub[m * aRow + k] * ps);
      let ss = 0;
      for (const v of xs) ss += v * v;
      const inv = 1 / Math.sqrt(ss / K + eps);
      for (let k = 0; k < K; k++) {
        // x' rounds through the post scale (K/2 + 4 u of the post term) and the add.
        const size = Math.abs(x[m * rRow + k]) + Math.abs(post[k] * sub[m * aRow + k] * ps);
        if (opts.write) { wantOut[m * rRow + k] = xs[k]; boundOut[m * rRow + k] = (K / 2 + 8) * u * size; }
      }
      for (let n = 0; n < N; n++) {
        let acc = 0, size = 0;
        for (let k = 0; k < K; k++) {
          const t = xs[k] * gain[k] * inv * bEff[n * K + k];
          acc += t;
          // Each term also carries x''s own error (its bound, relative), so the sum's bound grows with K.
          size += Math.abs(t) + Math.abs(gain[k] * inv * bEff[n * K + k]) * (Math.abs(x[m * rRow + k]) + Math.abs(post[k] * sub[m * aRow + k] * ps));
        }
        wantC[mo * N + n] = acc;
        boundC[mo * N + n] = (2 * K + 16) * u * size;
      }
    }
    expectClose(gotOut, wantOut, { atol: boundOut, rtol: 0, label: `${label}: residOut` });
    return expectClose(got, wantC, { atol: boundC, rtol: 0, label });
  }

  it('post-norm and residual add fused into the loads of A (aResid: TTT-E2E\'s x += post_norm(s) before the next projection)', async () => {
    for (const weight of ['f32', 'f16-packed'] as WeightStorage[]) {
      // Vector-readable rows and not, decode rows (1, 2), prefill blocks off the tile grids, a stream wider than K.
      for (const [M, N, K, aRow, rRow] of [[1, 37, 19, 19, 19], [2, 21, 32, 32, 36], [1, 70, 256, 256, 256], [70, 33, 36, 36, 40], [70, 67, 48, 51, 48], [5, 9, 260, 260, 261]]) {
        await checkResid(`resid ${weight} ${M}x${N}x${K}`, M, N, K, aRow, rRow, { write: true, weight });
      }
    }
    await checkResid('resid, not written', 70, 33, 36, 36, 36, { write: false });
    await checkResid('resid, not written (decode)', 1, 33, 36, 36, 36, { write: false });
    await checkResid('resid, last row', 1, 21, 8, 8, 8, { write: true, lastRow: true, rows: 6 });
    await checkResid('resid, other tiles', 23, 45, 17, 17, 17, { write: true, tiles: { wide: { tm: 2, tn: 8, wgx: 4, wgy: 16 }, narrow: ROW_TILES } });
  });

  it('a fused post-norm refuses what it cannot do', () => {
    const spec: MatmulSpec = { M: 'rows', N: 4, K: 4, a: { row: 4, col: 1 }, b: { row: 4, col: 1 }, c: { row: 4, col: 1 }, aNorm: { eps: 1e-5 }, aResid: { row: 4, write: true } };
    const buf = zeros(ctx, 64), other = zeros(ctx, 64);
    const io = { a: buf, b: buf, c: buf, gain: buf, resid: buf, postGain: buf, residOut: other };
    expect(() => new MatmulOp(ctx, 'no norm', { ...spec, aNorm: undefined }, { ...io, gain: undefined }, block)).toThrow(/needs aNorm/);
    expect(() => new MatmulOp(ctx, 'same buffer', spec, { ...io, residOut: buf }, block)).toThrow(/must not be resid/);
    expect(() => new MatmulOp(ctx, 'no post gain', spec, { ...io, postGain: undefined }, block)).toThrow(/needs the resid/);
    expect(() => new MatmulOp(ctx, 'narrow rows', { ...spec, aResid: { row: 3, write: true } }, io, block)).toThrow(/row stride/);
    expect(() => new MatmulOp(ctx, 'batched', { ...spec, batch: 2 }, io, block)).toThrow(/unbatched/);
    expect(() => new MatmulOp(ctx, 'stray buffer', { ...spec, aResid: undefined }, io, block)).toThrow(/are for aResid/);
  });

  it('a fused norm refuses what it cannot do', () => {
    const spec: MatmulSpec = { M: 'rows', N: 4, K: 4, a: { row: 8, col: 1 }, b: { row: 4, col: 1 }, c: { row: 4, col: 1 } };
    const buf = zeros(ctx, 64);
    expect(() => new MatmulOp(ctx, 'glu+norm', { ...spec, aGlu: 4, aNorm: { eps: 1e-5 } }, { a: buf, b: buf, c: buf, gain: buf }, block)).toThrow(/exclude/);
    expect(() => new MatmulOp(ctx, 'no gain', { ...spec, aNorm: { eps: 1e-5 } }, { a: buf, b: buf, c: buf }, block)).toThrow(/gain buffer/);
  });

  it('other tile shapes give the same result (the shape is a parameter)', async () => {
    for (const wide of [{ tm: 2, tn: 8, wgx: 4, wgy: 16 }, { tm: 8, tn: 1, wgx: 32, wgy: 2 }, CPU_TILES]) {
      await check(`tiles ${JSON.stringify(wide)}`, { M: 'rows', N: 45, K: 17, a: { row: 17, col: 1 }, b: { row: 17, col: 1 }, c: { row: 45, col: 1 } }, { a: 23 * 17, b: 45 * 17, c: 23 * 45 }, { rows: 23, tiles: { wide, narrow: ROW_TILES } });
    }
  });
});
