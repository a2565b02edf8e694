/**
 * A static HTTP server on 127.0.0.1 that controls how bodies go out: in small pieces, slowly, without a
 * Content-Length, cut short cleanly or by dropping the connection. For the streaming loader's tests.
 */
import { readFile } from 'node:fs/promises';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';

export interface BodyPlan {
  /** Bytes per write (default: the whole body at once). */
  chunkBytes?: number;
  /** Pause between writes, in ms (default: none beyond waiting for the write to flush). */
  delayMs?: number;
  /** Send no Content-Length (chunked transfer): the client learns the size only at the end. */
  noLength?: boolean;
  /** End the response cleanly after this many bytes (with `noLength`, a silently truncated file). */
  endAt?: number;
  /** Destroy the connection after this many bytes (the client sees a failed download). */
  dropAt?: number;
}

export interface SentResponse {
  path: string;
  /** Body bytes written so far. */
  sent: number;
  /** True when the whole planned body went out. */
  completed: boolean;
  /** Resolves when the connection for this response closed (finished or not). */
  closed: Promise<void>;
}

export interface ChunkedServer {
  /** URL prefix ending in '/'. */
  url: string;
  /** Requests seen, as "METHOD /path". */
  log: string[];
  responses: SentResponse[];
  /** Requests for `path` ("/model.safetensors"), any method. */
  count(path: string): number;
  close(): Promise<void>;
}

/** Serves the files of `dir` (or `files`, by name), each sent per `plan(name)`. */
export async function serveChunked(
  files: string | Record<string, Uint8Array | string>,
  plan: (name: string) => BodyPlan = () => ({}),
): Promise<ChunkedServer> {
  const log: string[] = [];
  const responses: SentResponse[] = [];
  const read = async (name: string): Promise<Uint8Array | null> => {
    if (typeof files === 'string') return readFile(join(files, name)).then((b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength), () => null);
    const f = files[name];
    return f === undefined ? null : typeof f === 'string' ? new TextEncoder().encode(f) : f;
  };

  const send = async (res: ServerResponse, body: Uint8Array, p: BodyPlan, record: SentResponse): Promise<void> => {
    const limit = Math.min(body.byteLength, p.endAt ?? Infinity, p.dropAt ?? Infinity);
    const step = p.chunkBytes ?? Math.max(1, body.byteLength);
    while (record.sent < limit && !res.destroyed) {
      const piece = body.subarray(record.sent, Math.min(limit, record.sent + step));
      await new Promise<void>((resolve) => res.write(piece, () => resolve()));
      record.sent += piece.byteLength;
      if (p.delayMs) await new Promise((r) => setTimeout(r, p.delayMs));
      else await new Promise((r) => setImmediate(r));
    }
    if (res.destroyed) return;
    if (p.dropAt !== undefined && record.sent >= p.dropAt && p.dropAt < body.byteLength) {
      res.socket?.destroy();
      return;
    }
    record.completed = record.sent === body.byteLength || p.endAt !== undefined;
    res.end();
  };

  const server: Server = createServer((req, res) => {
    log.push(`${req.method} ${req.url}`);
    const path = (req.url ?? '/').split('?')[0];
    const name = decodeURIComponent(path).replace(/^\/+/, '');
    let closedResolve!: () => void;
    const record: SentResponse = { path, sent: 0, completed: false, closed: new Promise<void>((r) => (closedResolve = r)) };
    res.on('close', () => closedResolve());
    responses.push(record);
    if (name.includes('/') || name.startsWith('.') || name === '') {
      res.writeHead(404).end();
      return;
    }
    void read(name).then((body) => {
      if (body === null) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
        return;
      }
      const p = plan(name);
      const headers: Record<string, string | number> = { 'content-type': name.endsWith('.json') ? 'application/json' : 'application/octet-stream' };
      if (!p.noLength) headers['content-length'] = body.byteLength;
      res.writeHead(200, headers);
      if (req.method === 'HEAD') {
        record.completed = true;
        res.end();
        return;
      }
      void send(res, body, p, record);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('server has no port');
  return {
    url: `http://127.0.0.1:${addr.port}/`,
    log,
    responses,
    count: (p) => log.filter((l) => l.split(' ')[1]?.split('?')[0] === p).length,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}
