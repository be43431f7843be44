/**
 * The course as built: every lesson in content/ becomes a page; every <Lab> names a
 * scenario that exists; every <DemoCode> excerpt resolves; every internal link (in the
 * built pages, and markdown links in the MDX) points to a built page or asset, and every
 * #anchor to an id on that page. Works with whatever lessons exist when it runs.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { extractDemoExcerpt } from '../../src/components/demo-excerpt.ts';
import { parseTags } from '../../src/components/lab/fact.ts';
import { getScenario } from '../../src/scenarios/index.ts';
import { ensureBuilt } from '../helpers/site.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CONTENT = join(ROOT, 'content');
const DIST = join(ROOT, 'dist');

function files(dir: string, test: (name: string) => boolean): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const path = join(dir, d.name);
    if (d.isDirectory()) return files(path, test);
    return test(d.name) ? [path] : [];
  });
}

interface Lesson {
  /** content/…, for messages. */
  file: string;
  source: string;
  /** The page's path on the site: "/", "/course/keepalive/", "/404.html". */
  url: string;
}

/** Starlight's slug: the path without extension, or the frontmatter's `slug`. */
function lessonOf(path: string): Lesson {
  const source = readFileSync(path, 'utf8');
  const file = relative(ROOT, path);
  const front = /^---\n([\s\S]*?)\n---/.exec(source)?.[1] ?? '';
  const declared = /^slug:\s*['"]?([^'"\n]+?)['"]?\s*$/m.exec(front)?.[1];
  const slug = (declared ?? relative(CONTENT, path).replace(/\.mdx?$/, '').replace(/(^|\/)index$/, '')).toLowerCase();
  const url = slug === '404' ? '/404.html' : slug === '' ? '/' : `/${slug}/`;
  return { file, source, url };
}

const lessons = files(CONTENT, (n) => /\.mdx?$/.test(n) && !n.startsWith('_')).map(lessonOf);

/** dist/ file for a site path, or null when nothing is built there. */
function builtFile(urlPath: string): string | null {
  let p: string;
  try {
    p = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  const candidates = p.endsWith('/') ? [join(DIST, p, 'index.html')] : [join(DIST, p), join(DIST, p, 'index.html')];
  for (const c of candidates) if (c.startsWith(DIST) && existsSync(c) && statSync(c).isFile()) return c;
  return null;
}

const idsCache = new Map<string, Set<string>>();
function idsIn(htmlFile: string): Set<string> {
  let ids = idsCache.get(htmlFile);
  if (!ids) {
    const html = readFileSync(htmlFile, 'utf8');
    ids = new Set([...html.matchAll(/\sid="([^"]+)"/g)].map((m) => m[1]!.replace(/&amp;/g, '&')));
    idsCache.set(htmlFile, ids);
  }
  return ids;
}

/** Why an internal link is broken, or null. `from` is the page the link is on. */
function brokenLink(href: string, from: string): string | null {
  const url = new URL(href.replace(/&amp;/g, '&'), `http://site${from}`);
  if (url.host !== 'site') return null;
  const target = url.pathname === from && !href.replace(/[?#].*$/, '') ? builtFile(from) : builtFile(url.pathname);
  if (!target) return `${href}: nothing is built at ${url.pathname}`;
  if (url.hash && url.hash !== '#') {
    if (!target.endsWith('.html')) return `${href}: an anchor into a file that is not a page`;
    const id = decodeURIComponent(url.hash.slice(1));
    if (!idsIn(target).has(id)) return `${href}: no id="${id}" on ${url.pathname}`;
  }
  return null;
}

/** Source text outside code fences and inline code, line numbers kept. */
function prose(source: string): string {
  let fence: string | null = null;
  return source
    .split('\n')
    .map((l) => {
      const m = /^\s*(`{3,}|~{3,})/.exec(l);
      if (fence) {
        if (m && m[1]!.startsWith(fence)) fence = null;
        return '';
      }
      if (m) {
        fence = m[1]!;
        return '';
      }
      return l.replace(/`[^`]*`/g, (s) => ' '.repeat(s.length));
    })
    .join('\n');
}

describe('the course site', () => {
  beforeAll(async () => {
    await ensureBuilt();
  }, 600_000);

  it('has lessons, and the course ones among them', () => {
    expect(lessons.length).toBeGreaterThan(0);
    expect(lessons.some((l) => l.url.startsWith('/course/'))).toBe(true);
  });

  // The build under Vitest (NODE_ENV=test, on a clean clone the first test to ask makes it)
  // must be the site `npm start` serves: Astro and Starlight leave the search out of a
  // non-production build, and `npm start` after `npm test` would not build again.
  it('is the production site, search included', () => {
    const page = readFileSync(builtFile('/course/experiment-a/')!, 'utf8');
    expect(page).toMatch(/_astro\/Search[^"]*\.js/);
    expect(existsSync(join(DIST, 'pagefind', 'pagefind.js'))).toBe(true);
  });

  it('builds every lesson into a page', () => {
    const missing = lessons.filter((l) => !builtFile(l.url)).map((l) => `${l.file}: no page at ${l.url} in dist/`);
    expect(missing).toEqual([]);
  });

  it('every <Lab> names an existing scenario', () => {
    const wrong: string[] = [];
    let labs = 0;
    for (const l of lessons) {
      const { tags, errors } = parseTags(l.source, l.file, 'Lab');
      for (const e of errors) wrong.push(`${e.file}:${e.line}: ${e.message}`);
      for (const t of tags) {
        labs++;
        const id = t.props.scenario;
        if (typeof id !== 'string') wrong.push(`${t.file}:${t.line}: <Lab> needs scenario="<id>"`);
        else if (!getScenario(id)) wrong.push(`${t.file}:${t.line}: <Lab scenario="${id}">: no such scenario`);
      }
    }
    expect(wrong).toEqual([]);
    expect(labs).toBeGreaterThan(0);
  });

  it('every <DemoCode> excerpt resolves to a file, region or lines in demos/', () => {
    const wrong: string[] = [];
    for (const l of lessons) {
      const { tags, errors } = parseTags(l.source, l.file, 'DemoCode');
      for (const e of errors) wrong.push(`${e.file}:${e.line}: ${e.message}`);
      for (const t of tags) {
        const { file, region, lines } = t.props;
        const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
        try {
          if (typeof file !== 'string') throw new Error('file="…" is required');
          extractDemoExcerpt({ file, region: str(region), lines: str(lines), root: ROOT });
        } catch (err) {
          wrong.push(`${t.file}:${t.line}: ${err instanceof Error ? err.message : String(err)}`);
        }
      }
    }
    expect(wrong).toEqual([]);
  });

  it('every internal link and anchor in the built pages points somewhere', () => {
    const broken: string[] = [];
    for (const l of lessons) {
      const page = builtFile(l.url);
      if (!page) continue; // reported by "builds every lesson"
      const html = readFileSync(page, 'utf8');
      for (const m of html.matchAll(/\s(?:href|src)="([^"]*)"/g)) {
        const href = m[1]!;
        if (!/^[/#]/.test(href) || href.startsWith('//')) continue;
        const why = brokenLink(href, l.url);
        if (why) broken.push(`${l.url} (${l.file}): ${why}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('every markdown link in the lessons’ source points to a page or asset, and its anchor exists', () => {
    const broken: string[] = [];
    for (const l of lessons) {
      const text = prose(l.source);
      for (const m of text.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) {
        const href = m[1]!;
        if (/^[a-z][a-z0-9+.-]*:/i.test(href)) continue; // https:, mailto:
        const line = text.slice(0, m.index).split('\n').length;
        const why = brokenLink(href, l.url);
        if (why) broken.push(`${l.file}:${line}: ${why}`);
      }
    }
    expect(broken).toEqual([]);
  });
});
