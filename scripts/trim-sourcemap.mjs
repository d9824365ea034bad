/**
 * Keeps a bundle's source map to the project's own code: segments that point into node_modules
 * (the AWS SDK, the tokenizer's tables) become unmapped, and their sources and names go. A stack
 * trace still names the handler's own files and lines; the SDK's frames, which no operator reads
 * through a map, stay as bundled. It halves what the maps add to the package.
 */
import { readFileSync, writeFileSync } from 'node:fs';

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const DIGIT = Object.fromEntries([...B64].map((c, i) => [c, i]));

/** One segment's fields (base64 VLQ, each a delta from the same field of the segment before). */
function decodeSegment(text) {
  const fields = [];
  let value = 0;
  let shift = 0;
  for (const c of text) {
    const digit = DIGIT[c];
    value += (digit & 31) << shift;
    if (digit & 32) shift += 5;
    else {
      fields.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return fields;
}

function encode(n) {
  let v = n < 0 ? (-n << 1) | 1 : n << 1;
  let out = '';
  do {
    let digit = v & 31;
    v >>>= 5;
    if (v > 0) digit |= 32;
    out += B64[digit];
  } while (v > 0);
  return out;
}

/** Rewrites `file` (a .map) with only the segments whose source `keep` accepts. */
export function trimSourceMap(file, keep = (source) => !source.includes('node_modules/')) {
  const map = JSON.parse(readFileSync(file, 'utf8'));
  const sources = [];
  const sourceIndex = new Map();
  const names = [];
  const nameIndex = new Map();
  const indexOf = (list, index, value) => {
    if (!index.has(value)) index.set(value, list.push(value) - 1);
    return index.get(value);
  };
  // Absolute state while reading, and while writing (VLQ fields are deltas).
  const read = { source: 0, line: 0, column: 0, name: 0 };
  const written = { source: 0, line: 0, column: 0, name: 0 };
  const lines = map.mappings.split(';').map((line) => {
    let column = 0;
    let writtenColumn = 0;
    let unmapped = false;
    const out = [];
    for (const text of line === '' ? [] : line.split(',')) {
      const f = decodeSegment(text);
      column += f[0];
      let kept;
      if (f.length >= 4) {
        read.source += f[1];
        read.line += f[2];
        read.column += f[3];
        if (f.length === 5) read.name += f[4];
        const source = map.sources[read.source];
        if (keep(source)) kept = { source, name: f.length === 5 ? map.names[read.name] : undefined };
      }
      if (!kept) {
        // One unmapped segment ends the mapped range before it; the rest add nothing.
        if (!unmapped && out.length > 0) {
          out.push(encode(column - writtenColumn));
          writtenColumn = column;
        }
        unmapped = true;
        continue;
      }
      unmapped = false;
      const s = indexOf(sources, sourceIndex, kept.source);
      let seg = encode(column - writtenColumn) + encode(s - written.source);
      seg += encode(read.line - written.line) + encode(read.column - written.column);
      Object.assign(written, { source: s, line: read.line, column: read.column });
      if (kept.name !== undefined) {
        const n = indexOf(names, nameIndex, kept.name);
        seg += encode(n - written.name);
        written.name = n;
      }
      writtenColumn = column;
      out.push(seg);
    }
    return out.join(',');
  });
  const trimmed = { ...map, sources, names, mappings: lines.join(';') };
  delete trimmed.sourcesContent;
  writeFileSync(file, JSON.stringify(trimmed));
}
