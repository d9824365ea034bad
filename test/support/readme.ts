import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The `index`-th fenced code block of language `lang` in README.md: tests run the samples users copy. */
export function readmeSample(lang: string, index: number): string {
  const readme = readFileSync(join(process.cwd(), 'README.md'), 'utf8');
  const blocks = [...readme.matchAll(new RegExp(`^\`\`\`${lang}\\n([\\s\\S]*?)^\`\`\``, 'gm'))].map((m) => m[1]!);
  const block = blocks[index];
  if (block === undefined) throw new Error(`README.md has no ${lang} sample number ${index}`);
  return block;
}

/** The fenced code block of language `lang` in README.md that contains `marker`. */
export function readmeSampleWith(lang: string, marker: string): string {
  for (let i = 0; ; i++) {
    const block = readmeSample(lang, i); // throws past the last block
    if (block.includes(marker)) return block;
  }
}
