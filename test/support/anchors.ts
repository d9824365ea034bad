/**
 * The anchors a markdown page offers on GitHub: its headings' slugs, and the `<a id>` / `<a name>`
 * anchors typedoc-plugin-markdown puts before each row of a props table.
 */

/** GitHub's heading anchor: lower case, punctuation other than - and _ dropped, spaces as -. */
const slug = (heading: string): string =>
  heading
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '')
    .replace(/ /g, '-');

/**
 * A page's anchors: a heading's slug, numbered -1, -2, ... when an earlier heading has the same
 * (`BedrockQuota` and `bedrockQuota` both make bedrockquota), and each HTML anchor's id. Lines in
 * fenced code are no headings; a heading's links and code count by their text.
 */
export function pageAnchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  const prose = markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
  for (const [, heading] of prose.matchAll(/^#{1,6} (.+?)\s*$/gm)) {
    const base = slug(heading!.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1'));
    const n = seen.get(base);
    seen.set(base, (n ?? -1) + 1);
    anchors.add(n === undefined ? base : `${base}-${n + 1}`);
  }
  for (const [, id] of prose.matchAll(/<a (?:id|name)="([^"]+)"><\/a>/g)) anchors.add(id!);
  return anchors;
}
