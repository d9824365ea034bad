import { SSMClient } from '@aws-sdk/client-ssm';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Brake } from '../../lambda/runtime/brake';
import { Directory, putApiKey, putTenant } from '../../lambda/runtime/directory';
import { createHandler } from '../../lambda/authorizer/handler';
import { Limiter } from '../../lambda/engine/limiter';
import { parseConfig, requestsPerMinute, tokensPerDay } from '../../lambda/engine/plans';
import { createProxyHandler } from '../../lambda/proxy/handler';
import { type LocalGateway, type LocalRoute, startLocalGateway } from '../../local/gateway';
import { dynamoEndpoint, tableName, testStore, uniqueKey } from '../support/dynamo';
import { localClient } from '../../local/dynamodb-local';
import { installLambdaStreamingGlobals } from '../../local/lambda-streaming';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import { startUpstreamStandIn, type UpstreamStandIn } from '../../local/upstream-standin';

const CHAT = '/v1/chat/completions';
const config = parseConfig(
  JSON.parse(
    JSON.stringify({
      plans: { team: { tenant: [tokensPerDay(100_000)], user: [requestsPerMinute(3)], outputReservation: 200 } },
      endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
    }),
  ),
);

let ssm: SsmLocal;
let upstream: UpstreamStandIn;
let gateway: LocalGateway;
let apiKey: string;

beforeAll(async () => {
  installLambdaStreamingGlobals();
  ssm = await startSsmLocal();
  upstream = await startUpstreamStandIn({
    words: ['Hello', ' from', ' the', ' stand-in'],
    usage: { prompt_tokens: 10, completion_tokens: 4 },
    delayMs: 20,
  });
  const client = localClient(dynamoEndpoint());
  const tenant = uniqueKey('tenant');
  apiKey = `sk-local-${uniqueKey('k')}`;
  await putTenant(client, tableName(), { id: tenant, plan: 'team' });
  await putApiKey(client, tableName(), apiKey, { tenant, user: 'dev', status: 'active' });
  const log = () => {};
  const limiter = new Limiter({ store: testStore(), config, log, namespace: uniqueKey('ns') });
  const directory = new Directory({ client, tableName: tableName() });
  const brake = new Brake({
    client: new SSMClient({
      endpoint: ssm.endpoint,
      region: 'us-east-1',
      credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
    }),
    parameterName: '/local/brake',
    log,
  });
  const authorizer = createHandler({ config, limiter, directory, brake, log });
  const proxy = createProxyHandler({
    config,
    limiter,
    directory,
    brake,
    upstream: { baseUrl: upstream.baseUrl, apiKey: async () => 'sk-upstream' },
    log,
  });
  gateway = await startLocalGateway({
    authorizer,
    routes: [
      {
        method: 'POST',
        path: CHAT,
        streaming: true,
        handler: proxy as unknown as Extract<LocalRoute, { streaming: true }>['handler'],
      },
    ],
  });
});

afterAll(async () => {
  await gateway.stop();
  await upstream.stop();
  await ssm.stop();
});

describe('an unchanged OpenAI client', () => {
  it('streams a chat completion through the gateway, chunk by chunk', async () => {
    const openai = new OpenAI({ apiKey, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    const stream = await openai.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const pieces: string[] = [];
    const arrivals: number[] = [];
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta?.content ?? '';
      pieces.push(content);
      if (content) arrivals.push(performance.now());
    }
    expect(pieces.join('')).toBe('Hello from the stand-in');
    expect(pieces.filter(Boolean).length).toBe(4);
    // The stand-in waits 20 ms between words: a gateway or proxy that buffered the answer would hand
    // the client all four at once. A slow machine only spreads them further.
    expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThan(40);
  });

  it('reads the rate-limit headers and gets a RateLimitError with Retry-After past the limit', async () => {
    const openai = new OpenAI({ apiKey, baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    const { response } = await openai.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .withResponse();
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('3');
    expect(response.headers.get('x-ratelimit-remaining-tokens')).toMatch(/^\d+$/);
    await openai.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const error = await openai.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    const err = error as InstanceType<typeof OpenAI.RateLimitError>;
    expect(err.code).toBe('user_requests_per_minute');
    expect(Number(err.headers?.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(err.headers?.get('x-ratelimit-remaining')).toBe('0');
  });

  it('gets an AuthenticationError for an unknown key', async () => {
    const openai = new OpenAI({ apiKey: 'sk-not-a-real-key-000000', baseURL: `${gateway.url}/v1`, maxRetries: 0 });
    const error = await openai.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((error as InstanceType<typeof OpenAI.AuthenticationError>).code).toBe('invalid_api_key');
  });
});
