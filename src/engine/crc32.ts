/**
 * CRC-32 (IEEE 802.3, the zlib/PNG polynomial), for detecting damage to saved memories: it catches every
 * single-byte change and every burst of up to 32 bits, and a random change with probability 1 - 2^-32.
 * Not a defence against a forger (nothing in a memory blob is secret or signed).
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array, seed = 0): number {
  let c = ~seed >>> 0;
  for (let i = 0; i < bytes.length; i++) c = TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}
