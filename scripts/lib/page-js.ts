/**
 * How much JavaScript a built page makes the browser load: the scripts its HTML names
 * (<script src>, inline <script>, <link rel="modulepreload">) and, transitively, every
 * module those import statically. Dynamic import() targets are counted apart: they load
 * later (xterm, when a lab scrolls into view or Run is pressed).
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';

export interface PageJs {
  page: string;
  /** Gzipped bytes of what the page loads up front. */
  initialGzBytes: number;
  /** Gzipped bytes of modules only reached through import(), and what they import. */
  lazyGzBytes: number;
  files: Array<{ file: string; gzBytes: number; lazy: boolean }>;
}

const gz = (data: string | Buffer) => gzipSync(data).length;

function attr(tag: string, name: string): string | null {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i').exec(tag);
  return m ? (m[1] ?? m[2] ?? m[3] ?? '') : null;
}

/** Static `import … from "x"`, `import "x"`, `export … from "x"` (not `import("x")`). */
const STATIC_IMPORT = /\b(?:import|export)\s*(?:[\w$*{}\s,]*?\s*from\s*)?(["'`])([^"'`\n]+?\.m?js)\1/g;
/** Bundlers quote these with backticks too: import(`./xterm.js`). */
const DYNAMIC_IMPORT = /\bimport\s*\(\s*(["'`])([^"'`\n]+?\.m?js)\1\s*\)/g;

export function pageJs(dist: string, htmlFile: string): PageJs {
  const html = readFileSync(htmlFile, 'utf8');
  const initial = new Set<string>();
  const lazyRoots = new Set<string>();
  let inlineGz = 0;
  const toFile = (url: string, from: string): string | null => {
    if (/^(?:[a-z]+:)?\/\//i.test(url) || url.startsWith('data:')) return null;
    const path = url.split(/[?#]/)[0]!;
    const file = path.startsWith('/') ? join(dist, path) : resolve(dirname(from), path);
    return existsSync(file) ? file : null;
  };
  for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/gi)) {
    const tag = m[1]!;
    const type = (attr(tag, 'type') ?? '').toLowerCase();
    if (type && !['module', 'text/javascript', 'application/javascript'].includes(type)) continue; // JSON, ld+json, templates
    const src = attr(tag, 'src');
    if (src !== null) {
      const f = toFile(src, htmlFile);
      if (f) initial.add(f);
    } else if (m[2]!.trim()) {
      inlineGz += gz(m[2]!);
      // Inline modules import too.
      for (const i of m[2]!.matchAll(STATIC_IMPORT)) {
        const f = toFile(i[2]!, htmlFile);
        if (f) initial.add(f);
      }
      for (const i of m[2]!.matchAll(DYNAMIC_IMPORT)) {
        const f = toFile(i[2]!, htmlFile);
        if (f) lazyRoots.add(f);
      }
    }
  }
  for (const m of html.matchAll(/<link\b[^>]*>/gi)) {
    if ((attr(m[0], 'rel') ?? '').toLowerCase() !== 'modulepreload') continue;
    const f = toFile(attr(m[0], 'href') ?? '', htmlFile);
    if (f) initial.add(f);
  }
  // Follow static imports from the initial set; note dynamic ones for the lazy set.
  const closure = (roots: Iterable<string>, known: Set<string>, dynamic: Set<string>) => {
    const queue = [...roots];
    for (const f of queue) known.add(f);
    while (queue.length) {
      const file = queue.shift()!;
      const code = readFileSync(file, 'utf8');
      for (const m of code.matchAll(STATIC_IMPORT)) {
        const dep = toFile(m[2]!, file);
        if (dep && !known.has(dep)) {
          known.add(dep);
          queue.push(dep);
        }
      }
      for (const m of code.matchAll(DYNAMIC_IMPORT)) {
        const dep = toFile(m[2]!, file);
        if (dep) dynamic.add(dep);
      }
    }
  };
  const upFront = new Set<string>();
  closure(initial, upFront, lazyRoots);
  const lazy = new Set<string>();
  closure([...lazyRoots].filter((f) => !upFront.has(f)), lazy, new Set());
  for (const f of upFront) lazy.delete(f);
  const files = [
    ...[...upFront].map((f) => ({ file: relative(dist, f), gzBytes: gz(readFileSync(f)), lazy: false })),
    ...[...lazy].map((f) => ({ file: relative(dist, f), gzBytes: gz(readFileSync(f)), lazy: true })),
  ];
  if (inlineGz) files.push({ file: '(inline scripts)', gzBytes: inlineGz, lazy: false });
  return {
    page: relative(dist, htmlFile),
    initialGzBytes: files.filter((f) => !f.lazy).reduce((a, f) => a + f.gzBytes, 0),
    lazyGzBytes: files.filter((f) => f.lazy).reduce((a, f) => a + f.gzBytes, 0),
    files,
  };
}

/** Every built page that contains a lab (the <Lab> component's root element). */
export function labPages(dist: string): string[] {
  const pages: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const p = join(dir, entry);
      if (statSync(p).isDirectory()) walk(p);
      else if (entry.endsWith('.html') && readFileSync(p, 'utf8').includes('data-lab-root')) pages.push(p);
    }
  };
  if (existsSync(dist)) walk(dist);
  return pages.sort();
}
