/**
 * Copies a buffer (or a range of it) to the CPU through a staging buffer made for the occasion. For
 * read-backs outside the token loop (saving memory); the loop reads through its own preallocated buffer.
 */
export async function readBufferBytes(device: GPUDevice, buf: GPUBuffer, offset = 0, size = buf.size): Promise<Uint8Array> {
  const staging = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const enc = device.createCommandEncoder();
    enc.copyBufferToBuffer(buf, offset, staging, 0, size);
    device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const out = new Uint8Array(staging.getMappedRange().slice(0));
    staging.unmap();
    return out;
  } finally {
    staging.destroy();
  }
}
