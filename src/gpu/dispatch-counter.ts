/**
 * Counts the dispatches recorded into a compute pass, for the launches-per-block figure the engine
 * reports. The wrapped pass forwards every call; only `dispatchWorkgroups` is counted.
 */
export class DispatchCounter {
  count = 0;
  readonly encoder: GPUComputePassEncoder;

  constructor(pass: GPUComputePassEncoder) {
    const count = () => this.count++;
    this.encoder = new Proxy(pass, {
      get(target, prop) {
        if (prop === 'dispatchWorkgroups') {
          return (x: number, y?: number, z?: number) => {
            count();
            target.dispatchWorkgroups(x, y, z);
          };
        }
        const v = Reflect.get(target, prop) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }
}
