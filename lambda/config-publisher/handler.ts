import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import type { LimiterConfig } from '../engine/plans';
import { configSha256 } from '../engine/config-hash';
import { publishConfig, readConfigBySha256 } from '../engine/published-config';
import { CLIENT_TIMEOUTS, clientConfig } from '../runtime/aws-clients';
import { isThrottling, withBackoff } from '../runtime/backoff';
import { limiterConfig, log, required } from '../runtime/environment';

export interface PublisherDeps {
  readonly client: DynamoDBClient;
  readonly tableName: string;
  /** The configuration this function was deployed with (its config.json): the functions' own. */
  readonly config: () => LimiterConfig;
  readonly log: (entry: Record<string, unknown>) => void;
}

/** Stable: the published item is one and the same through every update, never a replacement. */
export const PHYSICAL_ID = 'llm-rate-limiter-config';
/** The response must reach CloudFormation well within the function's own timeout. */
const RESPONSE_TIMEOUT_MS = 10_000;
/** Kept for the answer: the response's own timeout and a margin. */
const ANSWER_RESERVE_MS = RESPONSE_TIMEOUT_MS + 2_000;
/** Retrying without a Lambda context (tests, scripts). */
const DEFAULT_RETRY_BUDGET_MS = 20_000;

/** What the Lambda runtime's context offers that the publisher reads. */
export interface RemainingTime {
  getRemainingTimeInMillis(): number;
}

/**
 * What a retry may cure: throttling, and AccessDeniedException, which is what a role's new policy
 * looks like until IAM has propagated it (the custom resource runs seconds after the policy is made).
 */
const curable = (err: unknown): boolean => isThrottling(err) || (err as Error).name === 'AccessDeniedException';

/**
 * The custom resource behind the published configuration. CloudFormation invokes it on every
 * deploy that changes the configuration (its hash is a property) and waits for the answer at the
 * presigned ResponseURL. Create and Update write the item; Delete leaves it (the table is often
 * retained with the tenants the item describes). A failure is answered FAILED with its reason, so
 * a deploy never waits out the custom resource's timeout.
 */
export async function handleConfigEvent(
  event: CloudFormationCustomResourceEvent,
  deps: PublisherDeps,
  context?: RemainingTime,
): Promise<void> {
  let status: 'SUCCESS' | 'FAILED' = 'SUCCESS';
  let reason: string | undefined;
  try {
    const budgetMs = context ? context.getRemainingTimeInMillis() - ANSWER_RESERVE_MS : DEFAULT_RETRY_BUDGET_MS;
    const sha256 = String(event.ResourceProperties.ConfigSha256 ?? '');
    if (event.RequestType !== 'Delete')
      await withBackoff(() => publishIdentified(deps, sha256), {
        budgetMs,
        baseMs: 250,
        capMs: 4_000,
        retryable: curable,
        onRetry: (err, retry, delayMs) =>
          deps.log({ level: 'warn', message: 'publishing again', error: (err as Error).name, retry, delayMs }),
      });
    deps.log({ message: 'configuration published', requestType: event.RequestType, table: deps.tableName, sha256 });
  } catch (err) {
    status = 'FAILED';
    reason = `${(err as Error).name}: ${(err as Error).message}`.slice(0, 1000);
    deps.log({
      level: 'error',
      message: 'configuration not published',
      requestType: event.RequestType,
      error: (err as Error).name,
    });
  }
  await respond(event.ResponseURL, {
    Status: status,
    ...(reason ? { Reason: reason } : {}),
    PhysicalResourceId: PHYSICAL_ID,
    StackId: event.StackId,
    RequestId: event.RequestId,
    LogicalResourceId: event.LogicalResourceId,
  });
}

/**
 * Publishes the configuration the event names by its hash: the function's own (a deploy: its
 * config.json changes with the hash), or one published before (an update reaching a function whose
 * code is not the one the hash was made for, as in a rollback). A hash no one published fails.
 */
async function publishIdentified(deps: PublisherDeps, sha256: string): Promise<void> {
  const own = deps.config();
  const ownSha256 = configSha256(own);
  if (!sha256) throw new Error('the request has no ConfigSha256 property: it names no configuration');
  const config = sha256 === ownSha256 ? own : await readConfigBySha256(deps.client, deps.tableName, sha256);
  if (!config)
    throw new Error(
      `no configuration with ConfigSha256 ${sha256} was ever published, and this function holds ${ownSha256}: nothing published`,
    );
  await publishConfig(deps.client, deps.tableName, config);
}

/**
 * PUT the answer to the presigned S3 URL, with an empty Content-Type: the URL's signature was made
 * without one, and a type the client adds on its own would not match it.
 */
function respond(url: string, body: Record<string, unknown>): Promise<void> {
  const payload = Buffer.from(JSON.stringify(body));
  const request = url.startsWith('https:') ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'PUT',
        headers: { 'content-type': '', 'content-length': payload.length },
        timeout: RESPONSE_TIMEOUT_MS,
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          (res.statusCode ?? 500) < 300 ? resolve() : reject(new Error(`the response URL answered ${res.statusCode}`)),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('the response URL did not answer in time')));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Built once per container from the environment the construct gives it. */
export function publisherDepsFromEnvironment(): PublisherDeps {
  return {
    client: new DynamoDBClient(clientConfig(CLIENT_TIMEOUTS.dynamodb)),
    tableName: required('TABLE_NAME'),
    config: limiterConfig,
    log,
  };
}
