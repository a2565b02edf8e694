import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openNodeGpu, type NodeGpu } from '../../src/node/webgpu.ts';

const SHADER = /* wgsl */ `
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let i = id.x;
  if (i < arrayLength(&out)) { out[i] = a[i] * b[i] + f32(i); }
}`;

async function runMulAdd(gpu: NodeGpu, a: Float32Array<ArrayBuffer>, b: Float32Array<ArrayBuffer>): Promise<Float32Array> {
  const { device } = gpu;
  const n = a.length;
  const mk = (data: Float32Array<ArrayBuffer> | null, usage: number) => {
    const buf = device.createBuffer({ size: n * 4, usage });
    if (data) device.queue.writeBuffer(buf, 0, data);
    return buf;
  };
  const S = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC;
  const ba = mk(a, S), bb = mk(b, S), bo = mk(null, S);
  const read = device.createBuffer({ size: n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const pipeline = device.createComputePipeline({
    layout: 'auto',
    compute: { module: device.createShaderModule({ code: SHADER }), entryPoint: 'main' },
  });
  const bind = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [ba, bb, bo].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bind);
  pass.dispatchWorkgroups(Math.ceil(n / 64));
  pass.end();
  enc.copyBufferToBuffer(bo, 0, read, 0, n * 4);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(read.getMappedRange().slice(0));
  read.unmap();
  for (const b of [ba, bb, bo, read]) b.destroy();
  return out;
}

describe('WebGPU in Node (Dawn)', () => {
  let gpu: NodeGpu;
  beforeAll(async () => {
    gpu = await openNodeGpu({ log: true });
  });
  afterAll(() => gpu?.device.destroy());

  it('opens an adapter, preferring lavapipe, and reports it', () => {
    expect(gpu.description).toMatch(/features:/);
    // On these machines lavapipe is installed by the setup script; SwiftShader is only the fallback.
    if (process.env.TTT_WEBGPU_BACKEND === undefined) expect(gpu.backend).toBe('lavapipe');
    expect(gpu.features.length).toBeGreaterThan(0);
  });

  it('runs a compute shader and reads back the exact result', async () => {
    const n = 1000;
    const a = Float32Array.from({ length: n }, (_, i) => (i % 17) - 8.5);
    const b = Float32Array.from({ length: n }, (_, i) => ((i * 7) % 13) * 0.25);
    const out = await runMulAdd(gpu, a, b);
    for (let i = 0; i < n; i++) expect(out[i]).toBe(Math.fround(Math.fround(a[i] * b[i]) + i));
  });

  it('falls back to SwiftShader when asked, and it computes the same', async () => {
    const sw = await openNodeGpu({ backends: ['swiftshader'], log: true });
    try {
      expect(sw.backend).toBe('swiftshader');
      expect(sw.features).not.toContain('shader-f16');
      const a = Float32Array.from({ length: 64 }, (_, i) => i);
      const out = await runMulAdd(sw, a, a);
      for (let i = 0; i < 64; i++) expect(out[i]).toBe(i * i + i);
    } finally {
      sw.device.destroy();
    }
  });
});
