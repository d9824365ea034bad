// Taken before bench/run.ts sends whatever else is written to stdout (the functions' log lines and
// EMF metrics, which Lambda would send to CloudWatch) to stderr: stdout carries figures only.
const toStdout = process.stdout.write.bind(process.stdout);

/** Every figure line printed so far, for bench/run.ts to check. */
export const printed: string[] = [];

/** One JSON line per figure: {"name","value","unit"} plus "baseline" and "ratio" where compared. */
export function report(name: string, value: number, unit: string, baseline?: number): void {
  const line: Record<string, unknown> = { name, value: round(value), unit };
  if (baseline !== undefined) {
    line.baseline = round(baseline);
    line.ratio = baseline === 0 ? null : round(value / baseline);
  }
  const text = `${JSON.stringify(line)}\n`;
  printed.push(text);
  toStdout(text);
}

const round = (n: number): number => (Number.isInteger(n) ? n : Number(n.toPrecision(4)));

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export interface LoadResult {
  readonly decisions: number;
  readonly admitted: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** `total` decisions from `concurrency` loops, each awaiting its previous decision. */
export async function load(
  total: number,
  concurrency: number,
  decideOne: (i: number) => Promise<boolean>,
): Promise<LoadResult> {
  const latencies: number[] = [];
  let next = 0;
  let admitted = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const t = performance.now();
        if (await decideOne(i)) admitted++;
        latencies.push(performance.now() - t);
      }
    }),
  );
  const elapsedS = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    decisions: total,
    admitted,
    perSecond: total / elapsedS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
  };
}
