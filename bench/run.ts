/**
 * npm run bench: every benchmark, one JSON line per figure on stdout, checked at the end against
 * bench/figures.ts (every figure printed once, valid, with a finite value; exit 1 if not).
 * `npm run bench -- <scenario>` runs one; `--smoke` runs at a tiny size (bench/smoke.ts).
 * Not part of npm test, but test/bench/smoke.test.ts runs it with --smoke.
 */
import { startDynamoDbLocal } from '../local/dynamodb-local';
import { benchAuthorizer, benchObservability } from './authorizer';
import { benchBrake } from './brake';
import { benchConstruct } from './construct';
import { benchCost } from './cost';
import { benchEconomics } from './economics';
import { benchEngine } from './engine';
import { benchFairness } from './fairness';
import { benchFidelity } from './fidelity';
import { benchFootprint } from './footprint';
import { checkOutput, SCENARIOS, type Scenario } from './figures';
import { benchGateway } from './gateway';
import { benchHardCap } from './hard-cap';
import { benchPackage } from './package';
import { benchProxy } from './proxy';
import { benchReach } from './reach';
import { printed } from './report';
import { benchSecurity } from './security';

/** Each scenario's figures and place in the order (gateway last: npm start's stack repoints the SDK) are in bench/figures.ts. */
const RUN: Record<Scenario, (dynamoEndpoint: string) => Promise<void>> = {
  engine: benchEngine,
  authorizer: benchAuthorizer,
  observability: benchObservability,
  proxy: benchProxy,
  security: benchSecurity,
  fidelity: benchFidelity,
  cost: benchCost,
  brake: benchBrake,
  construct: benchConstruct,
  package: benchPackage,
  footprint: benchFootprint,
  reach: benchReach,
  economics: benchEconomics,
  fairness: benchFairness,
  gateway: benchGateway,
  hardcap: benchHardCap,
};

const args = process.argv.slice(2).filter((a) => a !== '--smoke');
const unknown = args.filter((a) => !(SCENARIOS as string[]).includes(a));
if (unknown.length > 0) {
  process.stderr.write(`unknown bench scenario ${unknown.join(', ')}: use one of ${SCENARIOS.join(', ')}\n`);
  process.exit(2);
}
const scenarios = args.length > 0 ? SCENARIOS.filter((s) => args.includes(s)) : SCENARIOS;

// The figures alone on stdout (bench/report.ts writes them); the rest goes to stderr.
process.stdout.write = process.stderr.write.bind(process.stderr) as typeof process.stdout.write;

const dynamo = await startDynamoDbLocal();
try {
  for (const scenario of scenarios) {
    const started = performance.now();
    await RUN[scenario](dynamo.endpoint);
    process.stderr.write(`bench: ${scenario} took ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
  }
} finally {
  await dynamo.stop();
}
const problems = checkOutput(printed.join(''), scenarios);
if (problems.length > 0) {
  process.stderr.write(`bench output does not match bench/figures.ts:\n${problems.map((p) => `  ${p}\n`).join('')}`);
  process.exitCode = 1;
}
