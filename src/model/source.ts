/**
 * Where a model's files come from. A model is "a folder": config.json, model.safetensors and, for
 * non-byte tokenizers, tokenizer.json (+ tokenizer_config.json). The loader only ever asks a
 * `ModelSource` for files by name, so the same loader serves a URL prefix (the demo's bundled models,
 * the Hugging Face Hub), a folder on disk (Node: tests, scripts) and files the user dropped on the page.
 */
import { ModelFetchError } from './errors.ts';

export interface ModelSource {
  /** Names the whole model in messages: a URL prefix, a folder path, or "uploaded files". */
  readonly name: string;
  /** Where `file` lives (a full URL or path), for error messages. */
  locate(file: string): string;
  /** Whether the model has this file. Throws ModelFetchError when that cannot be determined. */
  exists(file: string): Promise<boolean>;
  /** The file's bytes. A missing or unreadable file throws ModelFetchError naming it. */
  readBytes(file: string): Promise<Uint8Array>;
  /** The file as UTF-8 text (a leading BOM is dropped). */
  readText(file: string): Promise<string>;
}

/** Only plain relative names: a model source never reads outside its own folder. */
function checkFileName(file: string, source: string): void {
  const segments = file.split('/');
  if (file === '' || file.includes('\\') || segments.some((s) => s === '' || s === '.' || s === '..')) {
    throw new ModelFetchError(`"${file}" is not a plain relative file name`, source);
  }
}

const utf8 = new TextDecoder('utf-8');

/**
 * Files under a URL prefix, fetched with `fetch` (browsers and Node 18+). A relative prefix is
 * resolved against the page's location. Works with any static server and with Hugging Face's
 * `https://huggingface.co/<org>/<model>/resolve/main/`.
 */
export class UrlSource implements ModelSource {
  readonly name: string;
  private readonly prefix: string;
  private readonly fetchFn: typeof fetch;
  private readonly init: RequestInit | undefined;

  constructor(prefix: string, options: { fetch?: typeof fetch; init?: RequestInit } = {}) {
    const base = (globalThis as { location?: { href?: string } }).location?.href;
    let url: URL;
    try {
      url = base === undefined ? new URL(prefix) : new URL(prefix, base);
    } catch {
      throw new ModelFetchError(`"${prefix}" is not a valid URL${base === undefined ? ' (outside a page, the prefix must be absolute)' : ''}`);
    }
    if (!url.pathname.endsWith('/')) url.pathname += '/';
    this.prefix = url.href;
    this.name = this.prefix;
    this.fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
    this.init = options.init;
  }

  locate(file: string): string {
    const u = new URL(this.prefix);
    u.pathname += file.split('/').map(encodeURIComponent).join('/');
    return u.href;
  }

  private async request(file: string, method: 'GET' | 'HEAD'): Promise<Response> {
    checkFileName(file, this.name);
    const url = this.locate(file);
    try {
      return await this.fetchFn(url, { ...this.init, method });
    } catch (e) {
      throw new ModelFetchError(`could not fetch "${file}": ${(e as Error).message}`, url);
    }
  }

  /**
   * Dev servers with an SPA fallback (Vite's, for one) answer a missing file with 200 and index.html.
   * No model file is HTML, so an HTML answer for a non-.html name means "not there".
   */
  private static isHtmlFallback(file: string, res: Response): boolean {
    return !file.endsWith('.html') && (res.headers.get('content-type') ?? '').startsWith('text/html');
  }

  async exists(file: string): Promise<boolean> {
    let res = await this.request(file, 'HEAD');
    if (res.status === 405 || res.status === 501) {
      // Some servers do not answer HEAD: ask for the file and drop the body.
      res = await this.request(file, 'GET');
      await res.body?.cancel();
    }
    if (res.ok) return !UrlSource.isHtmlFallback(file, res);
    if (res.status === 404 || res.status === 410) return false;
    throw new ModelFetchError(`cannot tell whether "${file}" exists: HTTP ${res.status} ${res.statusText}`.trimEnd(), this.locate(file));
  }

  async readBytes(file: string): Promise<Uint8Array> {
    const res = await this.request(file, 'GET');
    const url = this.locate(file);
    if (!res.ok) {
      await res.body?.cancel();
      const what = res.status === 404 ? 'not found' : 'could not be fetched';
      throw new ModelFetchError(`"${file}" ${what}: HTTP ${res.status} ${res.statusText}`.trimEnd(), url);
    }
    if (UrlSource.isHtmlFallback(file, res)) {
      await res.body?.cancel();
      throw new ModelFetchError(`"${file}" not found: the server answered with an HTML page (a dev server's fallback for a missing file?)`, url);
    }
    try {
      return new Uint8Array(await res.arrayBuffer());
    } catch (e) {
      throw new ModelFetchError(`download of "${file}" failed: ${(e as Error).message}`, url);
    }
  }

  async readText(file: string): Promise<string> {
    return utf8.decode(await this.readBytes(file));
  }
}

type NodeFs = typeof import('node:fs/promises');

/**
 * Files in a folder on disk (Node only). `node:fs` is imported on first use, through a specifier the
 * bundler does not follow, so browser bundles that include this module still build and load.
 */
export class NodeDirectorySource implements ModelSource {
  readonly name: string;
  /** The folder, as given. */
  readonly dir: string;
  private fs: Promise<NodeFs> | null = null;

  constructor(dir: string) {
    this.dir = dir;
    this.name = dir.replace(/[\\/]+$/, '') || dir;
  }

  locate(file: string): string {
    return `${this.name}/${file}`;
  }

  private nodeFs(): Promise<NodeFs> {
    if (!this.fs) {
      const specifier = 'node:fs/promises';
      this.fs = import(/* @vite-ignore */ specifier) as Promise<NodeFs>;
    }
    return this.fs;
  }

  async exists(file: string): Promise<boolean> {
    checkFileName(file, this.name);
    const fs = await this.nodeFs();
    try {
      return (await fs.stat(this.locate(file))).isFile();
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return false;
      throw new ModelFetchError(`cannot tell whether "${file}" exists: ${(e as Error).message}`, this.locate(file));
    }
  }

  async readBytes(file: string): Promise<Uint8Array> {
    checkFileName(file, this.name);
    const fs = await this.nodeFs();
    const path = this.locate(file);
    try {
      const buf = await fs.readFile(path);
      // A plain Uint8Array over the same memory (a Buffer's extra methods are not part of the contract).
      return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw new ModelFetchError(`"${file}" not found in ${this.name}`, path);
      throw new ModelFetchError(`could not read "${file}": ${(e as Error).message}`, path);
    }
  }

  async readText(file: string): Promise<string> {
    return utf8.decode(await this.readBytes(file));
  }
}

/** What an in-memory model file may be given as. */
export type MemoryFile = Blob | Uint8Array | ArrayBuffer | string;

/**
 * Files already in memory: files the user picked or dropped (a FileList or File[], keyed by their base
 * names, so picking a whole folder works), or a map/object of name → contents.
 */
export class MemorySource implements ModelSource {
  readonly name: string;
  private readonly files = new Map<string, MemoryFile>();

  constructor(
    files: Iterable<File> | ReadonlyMap<string, MemoryFile> | Readonly<Record<string, MemoryFile>>,
    name = 'uploaded files',
  ) {
    this.name = name;
    if (files instanceof Map) {
      for (const [k, v] of files) this.files.set(k, v);
    } else if (Symbol.iterator in files) {
      // From a folder pick, prefer the shallowest file of each name (the model's own, not a subfolder's).
      const depth = (f: File): number => ((f as File & { webkitRelativePath?: string }).webkitRelativePath ?? '').split('/').length;
      for (const f of files as Iterable<File>) {
        const prev = this.files.get(f.name);
        if (prev === undefined || depth(f) < depth(prev as File)) this.files.set(f.name, f);
      }
    } else {
      for (const [k, v] of Object.entries(files as Readonly<Record<string, MemoryFile>>)) this.files.set(k, v);
    }
  }

  locate(file: string): string {
    return `${this.name}: ${file}`;
  }

  async exists(file: string): Promise<boolean> {
    return this.files.has(file);
  }

  async readBytes(file: string): Promise<Uint8Array> {
    const f = this.files.get(file);
    if (f === undefined) {
      const have = [...this.files.keys()].sort();
      throw new ModelFetchError(`"${file}" not found (have: ${have.length ? have.join(', ') : 'no files'})`, this.name);
    }
    if (typeof f === 'string') return new TextEncoder().encode(f);
    if (f instanceof Uint8Array) return f;
    if (f instanceof ArrayBuffer) return new Uint8Array(f);
    try {
      return new Uint8Array(await f.arrayBuffer());
    } catch (e) {
      throw new ModelFetchError(`could not read "${file}": ${(e as Error).message}`, this.name);
    }
  }

  async readText(file: string): Promise<string> {
    return utf8.decode(await this.readBytes(file));
  }
}
