/**
 * Tenant economics (issue 26): budget alerts fire once per threshold per period however many
 * requests in however many containers cross the line together. Several rounds of concurrent
 * requests from four containers, each round a fresh tenant crossing 50 and 80 percent of its daily
 * budget; the events the local EventBridge endpoint received, through the real SDK client.
 *
 * And what the usage ledger adds to DynamoDB per admitted request, with leases on (bench/cost.ts's
 * streamed chat run, counted at the wire): by default, and written at most every second.
 */
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { Limiter } from '../lambda/engine/limiter';
import { parseConfig, tokensPerCalendarDay } from '../lambda/engine/plans';
import { LimitStore } from '../lambda/engine/store';
import { eventBridgeSink } from '../lambda/runtime/alerts';
import { localClient } from '../local/dynamodb-local';
import { startSsmLocal } from '../local/ssm-local';
import { report } from './report';
import { streamedChatCost } from './cost';
import { size } from './smoke';

const TABLE = 'llm-rate-limiter-bench-economics';
const CHAT = '/v1/chat/completions';

export async function benchEconomics(dynamoEndpoint: string): Promise<void> {
  await benchAlerts(dynamoEndpoint);
  await benchLedger(dynamoEndpoint);
}

async function benchLedger(dynamoEndpoint: string): Promise<void> {
  const f = await streamedChatCost(dynamoEndpoint, size(200, 10));
  const started = Date.now();
  const batched = await streamedChatCost(dynamoEndpoint, size(1_000, 10), 1, undefined, 1);
  const batchedSeconds = (Date.now() - started) / 1000;
  const hot = await streamedChatCost(dynamoEndpoint, size(400, 40), size(20, 4));
  report(
    'economics.ledger.write_units_per_request',
    f.ledger.writeUnits,
    "write units the usage ledger adds per admitted streamed request, leases on, written at every request's end " +
      "(the default: nothing lost with a container); baseline: the engine's own write units per request, same run",
    f.writeUnits - f.ledger.writeUnits,
  );
  report(
    'economics.ledger.dynamodb_requests_per_request',
    f.ledger.requests,
    "DynamoDB requests the usage ledger adds per admitted request, same run; baseline: the engine's own",
    f.requests - f.ledger.requests,
  );
  report(
    'economics.ledger.write_units_per_request.flush_1s',
    batched.ledger.writeUnits,
    `the same with ledgerFlush 1 s, one busy container, ${size(1_000, 10)} requests in ${batchedSeconds.toFixed(1)} s (one that ` +
      "stops while busy loses at most its last second of usage from the ledger); baseline: the default's",
    f.ledger.writeUnits,
  );
  report(
    'economics.ledger.busiest_partition_wcu_per_request',
    hot.ledger.busiestPartition,
    `write units on the ledger's busiest partition per admitted request, ${size(20, 4)} users of one tenant at once, each on its ` +
      'own containers; target <= 0.2 (5,000 requests/s at 1,000 WCU/s per partition)',
  );
}

async function benchAlerts(dynamoEndpoint: string): Promise<void> {
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
