/**
 * The brake at scale (docs/aws-fidelity.md): SSM reads per second as containers multiply (the
 * functions read the table's mirror; the mirror reads SSM on each change and once a minute),
 * against every container reading SSM every 5 s as before; and the time from a flip to the first
 * braked answer through the local stack while SSM throttles most reads.
 */
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { MAX_BRAKE_CACHE_MS } from '../lambda/runtime/brake';
import { startLocal } from '../local/start';
import { percentile, report } from './report';
import { size } from './smoke';

/** The mirror's SSM reads: one per change plus one a minute, whatever the containers. */
const MIRROR_READS_PER_S = (changesPerHour: number) => changesPerHour / 3600 + 1 / 60;

export async function benchBrake(): Promise<void> {
  for (const [name, containers] of [
    ['brake.ssm_reads_per_s', 10_000],
    ['brake.ssm_reads_per_s_1000_containers', 1_000],
  ] as const) {
    // Baseline: each warm container reads SSM once per cache period (5 s).
    report(
      name,
      MIRROR_READS_PER_S(60),
      `GetParameter/s with ${containers} warm containers and a flip a minute (target <= 10; baseline every container reading SSM every 5 s)`,
      containers / (MAX_BRAKE_CACHE_MS / 1000),
    );
  }

  const local = await startLocal({ port: 0, summary: () => {} });
  try {
    const ssm = new SSMClient({
      endpoint: local.ssmEndpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
    });
    const chat = () =>
      fetch(`${local.baseUrl}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${local.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
    const flip = (value: string) =>
      ssm.send(
        new PutParameterCommand({ Name: local.brakeParameterName, Value: value, Type: 'String', Overwrite: true }),
      );
    const until = async (braked: boolean) => {
      const started = performance.now();
      for (;;) {
        const res = await chat();
        const body = (await res.json()) as { error?: { code?: string } };
        if ((res.status === 429 && body.error?.code === 'brake') === braked) return performance.now() - started;
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    // SSM throttles 3 of every 4 GetParameter calls (the account's shared 40 a second taken by
    // others): the mirror's run outlasts it with backoff instead of waiting for the next minute.
    let reads = 0;
    local.ssm.throttle = (operation) => operation === 'GetParameter' && reads++ % 4 !== 3;
    const samples: number[] = [];
    for (let i = 0; i < size(5, 1); i++) {
      await flip('on');
      samples.push(await until(true));
      await flip('off');
      await until(false);
    }
    report(
      'brake.flip_to_effect_ms',
      percentile(
        samples.sort((a, b) => a - b),
        50,
      ),
      `ms from PutParameter to the first 429 brake through npm start's stack, SSM throttling 3 of 4 reads (p50 ` +
        `of 5; target <= 10,000: the ${MAX_BRAKE_CACHE_MS / 1000} s brake cache plus the mirror's backoff)`,
    );
  } finally {
    await local.stop();
  }
}
