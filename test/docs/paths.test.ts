/**
 * The docs name files and folders of this repository, and headings of its pages: each one must exist,
 * so the docs cannot rot.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pageAnchors } from '../support/anchors';

const root = process.cwd();
const docs = [
  'README.md',
  ...readdirSync(join(root, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => join('docs', f)),
];
/** Relative links, and `code` or (a parenthesis) that looks like a path in one of the repository's folders. */
const PATH = /^(?:lib|lambda|local|bin|test|bench|scripts|docs|\.ci)\/[\w./-]*[\w/]$/;

function pathsIn(file: string): { path: string; from: string }[] {
  const text = readFileSync(join(root, file), 'utf8');
  const links = [...text.matchAll(/\]\(([^)#:\s]+)(?:#[^)]*)?\)/g)].map((m) => join(dirname(file), m[1]!));
  const code = [...text.matchAll(/`([^`\s]+)`|\(([\w./-]+)\)/g)]
    .map((m) => (m[1] ?? m[2])!.replace(/:\d+$/, ''))
    .filter((p) => PATH.test(p));
  return [...links, ...code].map((path) => ({ path, from: file }));
}

describe('paths the docs name', () => {
  it.each(docs)('%s names only paths that exist', (file) => {
    const missing = pathsIn(file)
      .filter((p) => !existsSync(join(root, p.path)))
      .map((p) => p.path);
    expect(missing).toEqual([]);
  });

  it.each(docs)('%s links only to headings that exist (anchors as GitHub makes them)', (file) => {
    const text = readFileSync(join(root, file), 'utf8');
    const broken = [...text.matchAll(/\]\(([^)#:\s]*\.md|)#([^)\s]+)\)/g)]
      .filter(([, target, anchor]) => {
        const page = target ? join(dirname(file), target!) : file;
        if (!existsSync(join(root, page))) return false; // reported as a missing path
        return !pageAnchors(readFileSync(join(root, page), 'utf8')).has(anchor!);
      })
      .map(([link]) => link);
    expect(broken).toEqual([]);
  });
});
