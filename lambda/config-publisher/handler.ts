import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { CloudFormationCustomResourceEvent } from 'aws-lambda';
import type { LimiterConfig } from '../engine/plans';
import { publishConfig } from '../engine/published-config';
import { CLIENT_TIMEOUTS, clientConfig } from '../runtime/aws-clients';
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

/**
 * The custom resource behind the published configuration. CloudFormation invokes it on every
 * deploy that changes the configuration (its hash is a property) and waits for the answer at the
 * presigned ResponseURL. Create and Update write the item; Delete leaves it (the table is often
 * retained with the tenants the item describes). A failure is answered FAILED with its reason, so
 * a deploy never waits out the custom resource's timeout.
 */
export async function handleConfigEvent(event: CloudFormationCustomResourceEvent, deps: PublisherDeps): Promise<void> {
  let status: 'SUCCESS' | 'FAILED' = 'SUCCESS';
  let reason: string | undefined;
  try {
    if (event.RequestType !== 'Delete') await publishConfig(deps.client, deps.tableName, deps.config());
    deps.log({ message: 'configuration published', requestType: event.RequestType, table: deps.tableName });
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
