/**
 * What the proxy scenarios share: a proxy handler's dependencies on DynamoDB Local and the SSM
 * stand-in, one tenant on a plan whose limits never bind (time to first chunk is measured on the
 * admitted path), and the median of sampled timings.
 */
import { DynamoDB } from '@aws-sdk/client-dynamodb';
import { SSMClient } from '@aws-sdk/client-ssm';
import { MAX_RATE_PER_SECOND } from '../lambda/engine/constants';
import { Limiter } from '../lambda/engine/limiter';
import { type LimiterConfig, parseConfig, requestsPerMinute, tokensPerDay } from '../lambda/engine/plans';
import { ensureTable, LimitStore } from '../lambda/engine/store';
import type { ProxyDeps } from '../lambda/proxy/proxy';
import { Brake } from '../lambda/runtime/brake';
import { Directory, putApiKey, putTenant } from '../lambda/runtime/directory';
import { startSsmLocal } from '../local/ssm-local';
import { percentile } from './report';

/** The tenant and user every request is made as (the authorizer's context on the event). */
export const BENCH_CALLER = { tenant: 'bench', user: 'u', shard: '0' } as const;

export interface BenchProxyDeps {
  readonly client: DynamoDB;
  readonly config: LimiterConfig;
  /** Everything createProxyHandler needs but the upstream. */
  readonly deps: Omit<ProxyDeps, 'upstream'>;
  /** An API key of BENCH_CALLER, for the authorizer. */
  readonly apiKey: string;
  stop(): Promise<void>;
}

/** `endpoints` as the limiter's configuration writes them (route -> { models: { name: price } }). */
export async function benchProxyDeps(
  dynamoEndpoint: string,
  tableName: string,
  endpoints: Record<string, unknown>,
): Promise<BenchProxyDeps> {
  const client = new DynamoDB({
    endpoint: dynamoEndpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  await ensureTable(client, tableName);
  const ssm = await startSsmLocal();
  const config = parseConfig(
    JSON.parse(
      JSON.stringify({
        // The largest token limit the engine allows (1e12 a day is refused): a reservation that never
        // binds, so time to first chunk and settlement are measured on the admitted path.
        plans: { team: { tenant: [tokensPerDay(MAX_RATE_PER_SECOND * 86_400)], user: [requestsPerMinute(1e9)] } },
        endpoints,
      }),
    ),
  );
  await putTenant(client, tableName, { id: BENCH_CALLER.tenant, plan: 'team' });
  const apiKey = 'sk-bench-proxy-key-000000';
  await putApiKey(client, tableName, apiKey, {
    tenant: BENCH_CALLER.tenant,
    user: BENCH_CALLER.user,
    status: 'active',
  });
  const log = () => {};
  const limiter = new Limiter({ store: new LimitStore({ client, tableName }), config, log });
  const directory = new Directory({ client, tableName });
  const brake = new Brake({
    client: new SSMClient({
      endpoint: ssm.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    }),
    parameterName: '/bench/brake',
    log,
  });
  return {
    client,
    config,
    deps: { config, limiter, directory, brake, log },
    apiKey,
    stop: async () => {
      await ssm.stop();
      client.destroy();
    },
  };
}

/** The median of `samples` timings, each measured after the previous one ended. */
export async function median(samples: number, measure: () => Promise<number>): Promise<number> {
  const values: number[] = [];
  for (let i = 0; i < samples; i++) values.push(await measure());
  return percentile(
    values.sort((a, b) => a - b),
    50,
  );
}
