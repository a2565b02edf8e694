/**
 * `npm run bench -- ort-graph-capture`: can onnxruntime-web's WebGPU EP replay a captured graph for our
 * KV-cache decoder (the `shared` graph)? Graph capture needs every input and output bound to GPU buffers,
 * static shapes, and every node on the WebGPU EP. Three runs of 40 one-token steps over K/V buffers of 64
 * rows, with the attention mask static ([1, 64], ones up to the position, so GroupQueryAttention's
 * total length is the capacity and its valid length comes from the mask's sum):
 *
 *   1. no capture: the static-mask decode against our engine's logits (it must be correct first);
 *   2. capture, present bound to the past's buffers (the only way GroupQueryAttention allows under capture);
 *   3. capture, present bound to other buffers (to show that GroupQueryAttention refuses it).
 *
 * Shapes are pinned with freeDimensionOverrides: without them the session is refused ("all compute graph
 * nodes have not been partitioned to the WebGpuExecutionProvider": the shape arithmetic runs on the CPU).
 */
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/engine/engine.ts';
import { GpuContext } from '../src/gpu/context.ts';
import { openNodeGpu } from '../src/node/webgpu.ts';
import { BENCH_MODELS, benchModelFiles } from './models.ts';
import { loadOrtWebGpu, withLoopAwake } from './ort-webgpu.ts';
import { tokenStream } from './transformers-js-core.ts';

const GRAPH = fileURLToPath(new URL('../test/fixtures/ort-full-attention/shared.onnx', import.meta.url));
const C = 64;
const STEPS = 40;

export async function main(): Promise<void> {
  const files = benchModelFiles('full-attention');
  const cfg = BENCH_MODELS['full-attention'].config;
  const [L, H, d, V] = [cfg.numLayers, cfg.numAttnHeads, cfg.attnHeadDim, cfg.vocabSize];
  const prompt = tokenStream(STEPS);
  const ours = await openNodeGpu({ requiredFeatures: ['shader-f16'] });
  const engine = await Engine.create(new GpuContext(ours.device), BENCH_MODELS['full-attention'], { weights: 'f32', maxContext: C });
  await engine.feed(prompt.slice(0, STEPS - 1));
  const ref = (await engine.feed(prompt.slice(STEPS - 1), { logits: 'last' })).logits!;
  engine.destroy();

  const gpu = await openNodeGpu({ requiredFeatures: ['shader-f16', 'subgroups' as GPUFeatureName] });
  const dev = gpu.device;
  const ort = await loadOrtWebGpu(gpu);
  const onnx = new Uint8Array(await readFile(GRAPH));
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const kvSet = () => Array.from({ length: 2 * L }, () => ort.Tensor.fromGpuBuffer(dev.createBuffer({ size: H * C * d * 4, usage }), { dataType: 'float32', dims: [1, H, C, d] }));
  const past = kvSet();
  const other = kvSet();
  const names = (prefix: 'past' | 'present') => Array.from({ length: 2 * L }, (_, j) => (prefix === 'past' ? `past_key_values.${j >> 1}.${j & 1 ? 'value' : 'key'}` : `present.${j >> 1}.${j & 1 ? 'value' : 'key'}`));

  const runs = [
    { label: 'no capture, static mask, present = past buffers', capture: false, presents: past },
    { label: 'graph capture, present = past buffers', capture: true, presents: past },
    { label: 'graph capture, present = other buffers', capture: true, presents: other },
  ];
  await withLoopAwake(async () => {
    for (const r of runs) {
      const session = await ort.InferenceSession.create(onnx, {
        executionProviders: [{ name: 'webgpu', device: dev } as never],
        externalData: [{ path: 'model.safetensors', data: files.safetensors }],
        enableGraphCapture: r.capture,
        preferredOutputLocation: 'gpu-buffer',
        freeDimensionOverrides: { sequence_length: 1, total_sequence_length: C, past_sequence_length: C },
        logSeverityLevel: 3,
      });
      const idsBuf = dev.createBuffer({ size: 8, usage });
      const maskBuf = dev.createBuffer({ size: 8 * C, usage });
      const logitsBuf = dev.createBuffer({ size: V * 4, usage });
      const feeds: Record<string, unknown> = {
        input_ids: ort.Tensor.fromGpuBuffer(idsBuf, { dataType: 'int64', dims: [1, 1] }),
        attention_mask: ort.Tensor.fromGpuBuffer(maskBuf, { dataType: 'int64', dims: [1, C] }),
      };
      const fetches: Record<string, unknown> = { logits: ort.Tensor.fromGpuBuffer(logitsBuf, { dataType: 'float32', dims: [1, 1, V] }) };
      names('past').forEach((n, j) => (feeds[n] = past[j]));
      names('present').forEach((n, j) => (fetches[n] = r.presents[j]));
      try {
        for (let p = 0; p < STEPS; p++) {
          dev.queue.writeBuffer(idsBuf, 0, BigInt64Array.of(BigInt(prompt[p])));
          const mask = new BigInt64Array(C);
          mask.fill(1n, 0, p + 1);
          dev.queue.writeBuffer(maskBuf, 0, mask);
          await session.run(feeds as never, fetches as never);
        }
        const read = dev.createBuffer({ size: V * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
        const enc = dev.createCommandEncoder();
        enc.copyBufferToBuffer(logitsBuf, 0, read, 0, V * 4);
        dev.queue.submit([enc.finish()]);
        await read.mapAsync(GPUMapMode.READ);
        const got = new Float32Array(read.getMappedRange().slice(0));
        let diff = 0;
        for (let i = 0; i < V; i++) diff = Math.max(diff, Math.abs(got[i] - ref[i]));
        console.log(`${r.label}: ran ${STEPS} steps; last logits vs our engine, max |diff| ${diff.toExponential(2)}`);
      } catch (e) {
        console.log(`${r.label}: failed: ${(e as Error).message.slice(0, 400)}`);
      }
      await session.release();
    }
  });
  dev.destroy();
  ours.device.destroy();
}
