/**
 * Writes docs/mutation-score.json (or, with `proxy`, docs/mutation-score.proxy.json) from
 * Stryker's JSON report (reports/mutation/mutation.json, reports/mutation-proxy/mutation.json):
 * the score as Stryker counts it (killed and timed out over every mutant that ran or had no test;
 * ignored, static and compile errors left out), the counts, the surviving mutants (file, line,
 * mutator, replacement: docs/testing.md says which are equivalent), when, and the commit measured.
 * bench/engine.ts reports them as test.mutation_score.engine and test.mutation_score.proxy.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const scope = process.argv[2] === 'proxy' ? 'proxy' : 'engine';
const reportFile = scope === 'proxy' ? 'reports/mutation-proxy/mutation.json' : 'reports/mutation/mutation.json';
const report = JSON.parse(readFileSync(reportFile, 'utf8'));
const survivors = [];
for (const [path, file] of Object.entries(report.files))
  for (const m of file.mutants)
    if (m.status === 'Survived' || m.status === 'NoCoverage')
      survivors.push({
        file: path,
        line: m.location.start.line,
        mutator: m.mutatorName,
        replacement: m.replacement ?? '',
        status: m.status,
      });
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
  mutate: Object.keys(report.files).sort(),
  survivors,
  measuredAt: new Date().toISOString(),
  commit: execFileSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' }).trim(),
};
const out = scope === 'proxy' ? 'docs/mutation-score.proxy.json' : 'docs/mutation-score.json';
writeFileSync(out, `${JSON.stringify(summary, null, 2)}\n`);
const { survivors: _listed, ...figures } = summary;
process.stdout.write(`${JSON.stringify(figures)}\n`);
