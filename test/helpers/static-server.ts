/**
 * A plain static file server on 127.0.0.1 (a free port) for built apps: URL prefixes mapped to folders,
 * the MIME types a browser insists on for module scripts, 404 for anything else. Symlinks are followed,
 * as `npm install` of a folder leaves them in node_modules.
 */
import { createReadStream, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { extname, join, normalize, sep } from 'node:path';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.md': 'text/markdown; charset=utf-8',
};

export interface StaticServer {
  /** Ends in '/'. */
  readonly url: string;
  /** Paths requested, in order. */
  readonly log: string[];
  /** Bodies POSTed to `reportPath` (CSP violation reports), parsed as JSON where they are JSON. */
  readonly reports: unknown[];
  close(): Promise<void>;
}

export interface StaticServerOptions {
  /** Headers sent with every file (e.g. a Content-Security-Policy). */
  readonly headers?: Record<string, string>;
  /** A path that takes POSTs and keeps their bodies in `reports` (default '/csp-report'). */
  readonly reportPath?: string;
}

/** `mounts`: URL prefix ('/', '/app/') → folder; the longest matching prefix wins. */
export async function serveStatic(mounts: Record<string, string>, opts: StaticServerOptions = {}): Promise<StaticServer> {
  const prefixes = Object.keys(mounts).sort((a, b) => b.length - a.length);
  const log: string[] = [];
  const reports: unknown[] = [];
  const reportPath = opts.reportPath ?? '/csp-report';
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    log.push(path);
    if (req.method === 'POST' && path === reportPath) {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        try {
          reports.push(JSON.parse(body));
        } catch {
          reports.push(body);
        }
        res.writeHead(204).end();
      });
      return;
    }
    const prefix = prefixes.find((p) => path.startsWith(p));
    if (!prefix) return void res.writeHead(404).end();
    const base = mounts[prefix];
    let file = normalize(join(base, path.slice(prefix.length)));
    if (file !== base && !file.startsWith(base.endsWith(sep) ? base : base + sep)) return void res.writeHead(403).end();
    try {
      if (statSync(file).isDirectory()) file = join(file, 'index.html');
      const size = statSync(file).size;
      res.writeHead(200, { ...opts.headers, 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'content-length': size, 'cache-control': 'no-store' });
      if (req.method === 'HEAD') return void res.end();
      createReadStream(file).pipe(res);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    url: `http://127.0.0.1:${port}/`,
    log,
    reports,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
