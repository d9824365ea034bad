/**
 * Tenant economics (issue 26): budget alerts fire once per threshold per period however many
 * requests in however many containers cross the line together. Several rounds of concurrent
 * requests from four containers, each round a fresh tenant crossing 50 and 80 percent of its daily
 * budget; the events the local EventBridge endpoint received, through the real SDK client.
 */
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { Limiter } from '../lambda/engine/limiter';
import { parseConfig, tokensPerCalendarDay } from '../lambda/engine/plans';
import { LimitStore } from '../lambda/engine/store';
import { eventBridgeSink } from '../lambda/runtime/alerts';
import { localClient } from '../local/dynamodb-local';
import { startSsmLocal } from '../local/ssm-local';
import { report } from './report';
import { size } from './smoke';

const TABLE = 'llm-rate-limiter-bench-economics';
const CHAT = '/v1/chat/completions';

export async function benchEconomics(dynamoEndpoint: string): Promise<void> {
  const client = localClient(dynamoEndpoint);
  const { ensureTable } = await import('../lambda/engine/store');
  await ensureTable(client, TABLE);
  const aws = await startSsmLocal();
  try {
    const config = parseConfig(
      JSON.parse(
        JSON.stringify({
          plans: { pro: { tenant: [tokensPerCalendarDay(10_000, { timeZone: 'Europe/Paris' })] } },
          endpoints: { [CHAT]: { models: { m: { inputPerMillion: 1, outputPerMillion: 1 } } } },
        }),
      ),
    );
    const events = new EventBridgeClient({
      endpoint: aws.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
    });
    const rounds = size(5, 1);
    const requests = size(200, 40);
    let expected = 0;
    for (let round = 0; round < rounds; round++) {
      const tenant = { id: `bench-econ-${Date.now()}-${round}`, plan: 'pro' };
      const containers = [0, 1, 2, 3].map(
        () =>
          new Limiter({
            store: new LimitStore({ client, tableName: TABLE }),
            config,
            log: () => {},
            alerts: eventBridgeSink(events),
          }),
      );
      // 7,000 of 10,000 spent, then `requests` of 10 tokens at once: 50% and 80% are crossed.
      await containers[0]!.reserve({ tenant: tenant.id, user: 'u' }, tenant, CHAT, { tokens: 7_000, microUsd: 0 }, 0);
      await Promise.all(
        Array.from({ length: requests }, (_, i) =>
          containers[i % 4]!.reserve(
            { tenant: tenant.id, user: `u${i}` },
            tenant,
            CHAT,
            { tokens: 2_000 / requests, microUsd: 0 },
            0,
          ),
        ),
      );
      expected += 2;
    }
    const fired = aws.events.filter((e) =>
      String((e.detail as { tenant: string }).tenant).startsWith('bench-econ-'),
    ).length;
    report(
      'economics.alerts.duplicates',
      fired - expected,
      `events beyond one per threshold crossed (${expected} crossed, ${rounds} rounds of ${requests} concurrent requests in 4 containers; target 0)`,
    );
  } finally {
    await aws.stop();
    client.destroy();
  }
}
