/**
 * Writes docs/mutation-score.json from Stryker's JSON report (reports/mutation/mutation.json):
 * the score as Stryker counts it (killed and timed out over every mutant that ran or had no test;
 * ignored, static and compile errors left out), the counts, when, and the commit measured.
 * bench/engine.ts reports it as test.mutation_score.engine.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const report = JSON.parse(readFileSync('reports/mutation/mutation.json', 'utf8'));
const count = {};
for (const file of Object.values(report.files)) {
  for (const m of file.mutants) count[m.status] = (count[m.status] ?? 0) + 1;
}
const n = (status) => count[status] ?? 0;
const detected = n('Killed') + n('Timeout');
const undetected = n('Survived') + n('NoCoverage');
const summary = {
  score: Number(((100 * detected) / (detected + undetected)).toFixed(2)),
  mutants: detected + undetected,
  killed: n('Killed'),
  timedOut: n('Timeout'),
  survived: n('Survived'),
  noCoverage: n('NoCoverage'),
  ignored: n('Ignored'),
  errors: n('CompileError') + n('RuntimeError'),
  mutate: 'lambda/engine/**/*.ts',
  measuredAt: new Date().toISOString(),
  commit: execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim(),
};
writeFileSync('docs/mutation-score.json', `${JSON.stringify(summary, null, 2)}\n`);
process.stdout.write(`${JSON.stringify(summary)}\n`);
