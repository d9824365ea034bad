/**
 * The brake at scale (docs/aws-fidelity.md): Parameter Store serves 40 GetParameter calls a second
 * per account by default, shared with everything else in it. The functions read the brake from
 * the table's mirror instead; the mirror reads SSM once per change and once a minute.
 */
import { DeleteParameterCommand, PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient, GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHandler, depsFromEnvironment } from '../../lambda/authorizer/handler';
import { requestsPerMinute } from '../../lambda/engine/plans';
import { functionEnvironment } from '../../lambda/gateway/api';
import { putApiKey, putTenant } from '../../lambda/runtime/directory';
import { authorizerEvent, lambdaContext } from '../support/events';
import { localFunctionEnvironment } from '../support/function-environment';
import {
  BRAKE_MIRROR_HEARTBEAT_MS,
  BRAKE_MIRROR_SHARDS,
  BRAKE_MIRROR_STALE_MS,
  Brake,
  brakeMirrorKey,
  mirrorBrakeReader,
} from '../../lambda/runtime/brake';
import { MIRROR_SSM_BACKOFF, mirrorBrake } from '../../lambda/brake-mirror/handler';
import { CLIENT_TIMEOUTS } from '../../lambda/runtime/aws-clients';
import { deployedClientConfig } from '../support/deployed-client';
import { TABLE } from '../../lambda/engine/constants';
import { localClient } from '../../local/dynamodb-local';
import { type SsmLocal, startSsmLocal } from '../../local/ssm-local';
import type { MetricEvent } from '../../lambda/runtime/metrics';
import { dynamoEndpoint, tableName, uniqueKey } from '../support/dynamo';

let ssm: SsmLocal;
let onChange: (name: string) => void = () => {};
beforeAll(async () => {
  ssm = await startSsmLocal({ onParameterChange: (name) => onChange(name) });
});
afterAll(() => ssm.stop());

const ssmClient = () =>
  new SSMClient({
    endpoint: ssm.endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'x', secretAccessKey: 'x' },
  });
/** The client the deployed mirror builds (mirrorDepsFromEnvironment), pointed at the local endpoint. */
const deployedSsmClient = () => new SSMClient(deployedClientConfig(CLIENT_TIMEOUTS.ssm, ssm.endpoint));
/** SSM throttles the next `n` calls of `operation` (ThrottlingException), as past its shared rate. */
function throttleNext(operation: string, n: number) {
  let left = n;
  ssm.throttle = (op) => op === operation && left-- > 0;
}
const doc = () => DynamoDBDocumentClient.from(localClient(dynamoEndpoint()));
/** A parameter of its own per test (the mirror's items are keyed by the parameter's name). */
async function setup() {
  const name = `/test/${uniqueKey('brake')}`;
  const table = tableName();
  ssm.parameters.set(name, { value: 'off', version: 1, modified: Date.now() });
  return { name, table };
}

describe('the brake mirror', () => {
  it('keeps SSM reads to the mirror’s own, however many containers read the brake', async () => {
    const { name, table } = await setup();
    const deps = { ssm: ssmClient(), doc: doc(), tableName: table, parameterName: name, log: () => {} };
    const readsBefore = ssm.calls.GetParameter ?? 0;
    await mirrorBrake(deps);
    // 100 containers, each re-reading the brake as its cache expires, 10 rounds.
    const clock = { now: Date.now() };
    const containers = Array.from(
      { length: 100 },
      () =>
        new Brake({
          reader: mirrorBrakeReader(doc(), table, name),
          parameterName: name,
          clock: () => clock.now,
          cacheMs: 5_000,
        }),
    );
    for (let round = 0; round < 10; round++) {
      clock.now += 5_000;
      const states = await Promise.all(containers.map((c) => c.state()));
      expect(states.every((s) => s.enabled === false && s.source === 'mirror')).toBe(true);
    }
    expect((ssm.calls.GetParameter ?? 0) - readsBefore).toBe(1);
  });

  it('takes effect on every container within the cache time of a change', async () => {
    const { name, table } = await setup();
    const deps = { ssm: ssmClient(), doc: doc(), tableName: table, parameterName: name, log: () => {} };
    await mirrorBrake(deps);
    const mirrored = new Promise<void>((resolve) => {
      onChange = (changed) => {
        if (changed === name) void mirrorBrake(deps).then(() => resolve());
      };
    });
    const brake = new Brake({ reader: mirrorBrakeReader(doc(), table, name), parameterName: name, cacheMs: 0 });
    expect((await brake.state()).enabled).toBe(false);
    await ssmClient().send(new PutParameterCommand({ Name: name, Value: 'on', Type: 'String', Overwrite: true }));
    await mirrored;
    expect(await brake.state()).toMatchObject({ enabled: true, source: 'mirror' });
    onChange = () => {};
  });

  it('never lets an older version replace a newer one (change events arrive out of order)', async () => {
    const { name, table } = await setup();
    const deps = { ssm: ssmClient(), doc: doc(), tableName: table, parameterName: name, log: () => {} };
    const now = Date.now();
    ssm.parameters.set(name, { value: 'on', version: 7, modified: now });
    await mirrorBrake(deps);
    // What a late run read: version 6 while it was the parameter's latest, so modified before version 7.
    ssm.parameters.set(name, { value: 'off', version: 6, modified: now - 60_000 });
    await mirrorBrake(deps);
    for (let shard = 0; shard < BRAKE_MIRROR_SHARDS; shard++) {
      const item = (
        await doc().send(
          new GetCommand({ TableName: table, Key: { [TABLE.partitionKey]: brakeMirrorKey(name, shard) } }),
        )
      ).Item;
      expect(item).toMatchObject({ value: 'on', version: 7 });
    }
  });

  it('follows a parameter deleted and created again (its versions start over at 1)', async () => {
    const { name, table } = await setup();
    const deps = { ssm: ssmClient(), doc: doc(), tableName: table, parameterName: name, log: () => {} };
    const put = (value: string) =>
      ssmClient().send(new PutParameterCommand({ Name: name, Value: value, Type: 'String', Overwrite: true }));
    const recreate = async (value: string) => {
      await ssmClient().send(new DeleteParameterCommand({ Name: name }));
      await put(value);
    };
    const brake = new Brake({ reader: mirrorBrakeReader(doc(), table, name), parameterName: name, cacheMs: 0 });
    for (const value of ['on', 'on', 'on']) await put(value); // version 4
    await mirrorBrake(deps);
    expect(await brake.state()).toMatchObject({ enabled: true, source: 'mirror' });

    // Deleted and created again between two runs (the delete's event lost or late): version 1, off.
    await recreate('off');
    expect(ssm.parameters.get(name)?.version).toBe(1);
    await mirrorBrake(deps);
    expect(await brake.state()).toMatchObject({ enabled: false, source: 'mirror' });

    // A run in between sees it missing (released), and the new parameter's version 1 lands after it.
    await put('on');
    await mirrorBrake(deps);
    await ssmClient().send(new DeleteParameterCommand({ Name: name }));
    await mirrorBrake(deps);
    expect(await brake.state()).toMatchObject({ enabled: false, source: 'missing' });
    await put('on');
    expect(ssm.parameters.get(name)?.version).toBe(1);
    await mirrorBrake(deps);
    expect(await brake.state()).toMatchObject({ enabled: true, source: 'mirror' });
  });

  it('lands a flip within one run while SSM throttles the mirror (the deployed client retries no throttling)', async () => {
    const { name, table } = await setup();
    const logs: Record<string, unknown>[] = [];
    const deps = {
      ssm: deployedSsmClient(),
      doc: doc(),
      tableName: table,
      parameterName: name,
      log: (e: Record<string, unknown>) => logs.push(e),
    };
    await mirrorBrake(deps);
    const brake = new Brake({ reader: mirrorBrakeReader(doc(), table, name), parameterName: name, cacheMs: 0 });
    expect(await brake.state()).toMatchObject({ enabled: false, source: 'mirror' });
    await ssmClient().send(new PutParameterCommand({ Name: name, Value: 'on', Type: 'String', Overwrite: true }));
    const readsBefore = ssm.calls.GetParameter ?? 0;
    throttleNext('GetParameter', 4);
    try {
      await mirrorBrake(deps);
    } finally {
      ssm.throttle = undefined;
    }
    expect(await brake.state()).toMatchObject({ enabled: true, source: 'mirror' });
    expect((ssm.calls.GetParameter ?? 0) - readsBefore).toBe(5); // four throttled, the fifth answered
    expect(logs.filter((e) => e.error === 'ThrottlingException')).toHaveLength(4);
  });

  it('gives up after its backoff budget when SSM throttles the whole run, and says why', async () => {
    const { name, table } = await setup();
    const deps = { ssm: deployedSsmClient(), doc: doc(), tableName: table, parameterName: name, log: () => {} };
    throttleNext('GetParameter', Number.POSITIVE_INFINITY);
    const before = ssm.calls.GetParameter ?? 0;
    try {
      await expect(mirrorBrake(deps)).rejects.toMatchObject({ name: 'ThrottlingException' });
    } finally {
      ssm.throttle = undefined;
    }
    // Pauses of 0-100 ms doubling to 1 s within 6 s: more than a handful of tries, never an unbounded loop.
    const tries = (ssm.calls.GetParameter ?? 0) - before;
    expect(tries).toBeGreaterThan(3);
    expect(tries).toBeLessThan(MIRROR_SSM_BACKOFF.budgetMs / 10);
  });

  it('writes the table only when the parameter changed, or when the copy is due for its heartbeat', async () => {
    const { name, table } = await setup();
    const writes: string[] = [];
    const counted = doc();
    counted.middlewareStack.add(
      (next, context) => async (args) => {
        if (/Update/.test(String(context.commandName))) writes.push(String(context.commandName));
        return next(args);
      },
      { step: 'initialize' },
    );
    const clock = { now: Date.now() };
    const deps = { ssm: ssmClient(), doc: counted, tableName: table, parameterName: name, log: () => {} };
    const run = () => mirrorBrake({ ...deps, clock: () => clock.now });
    await run();
    expect(writes).toHaveLength(BRAKE_MIRROR_SHARDS); // the first copy
    // Two hours of once-a-minute runs with the parameter unchanged: only the heartbeats write.
    for (let minute = 1; minute <= 120; minute++) {
      clock.now += 60_000;
      await run();
    }
    const heartbeats = writes.length / BRAKE_MIRROR_SHARDS - 1;
    expect(heartbeats).toBe(Math.floor((120 * 60_000) / BRAKE_MIRROR_HEARTBEAT_MS));
    // A change is written at the next run, whatever the heartbeat.
    writes.length = 0;
    ssm.parameters.set(name, { value: 'on', version: 2, modified: clock.now });
    clock.now += 60_000;
    await run();
    expect(writes).toHaveLength(BRAKE_MIRROR_SHARDS);
    const brake = new Brake({
      reader: mirrorBrakeReader(doc(), table, name),
      parameterName: name,
      clock: () => clock.now,
    });
    expect(await brake.state()).toMatchObject({ enabled: true, source: 'mirror' });
  });

  it('says so loudly when the mirror has not run for minutes', async () => {
    const { name, table } = await setup();
    const deps = { ssm: ssmClient(), doc: doc(), tableName: table, parameterName: name, log: () => {} };
    await mirrorBrake({ ...deps, clock: () => Date.now() - BRAKE_MIRROR_STALE_MS - 60_000 });
    const metrics: MetricEvent[] = [];
    const logs: Record<string, unknown>[] = [];
    const brake = new Brake({
      reader: mirrorBrakeReader(doc(), table, name),
      parameterName: name,
      metrics: (m) => metrics.push(m),
      log: (e) => logs.push(e),
    });
    expect((await brake.state()).source).toBe('mirror');
    expect(metrics).toContainEqual({
      dimensions: { Function: 'brake' },
      metrics: { BrakeMirrorStale: { value: 1, unit: 'Count' } },
    });
    expect(logs).toContainEqual(
      expect.objectContaining({ level: 'error', message: expect.stringContaining('BRAKE MIRROR STALE') }),
    );
  });
});

describe('a stale mirror, with the functions built as deployed (the brake read from the mirror)', () => {
  const saved = { ...process.env };
  const CHAT = '/v1/chat/completions';
  const config = {
    plans: { team: { tenant: [requestsPerMinute(100)] } },
    endpoints: { [CHAT]: { models: { 'gpt-4o-mini': { inputPerMillion: 0.15, outputPerMillion: 0.6 } } } },
  };
  afterAll(() => {
    process.env = saved;
  });

  /** A brake parameter, its mirror's copy written `copyAgeMs` ago (none when undefined), and a caller's request. */
  async function deployed(copyAgeMs: number | undefined) {
    const { name, table } = await setup();
    Object.assign(process.env, {
      ...functionEnvironment({
        tableName: table,
        ledgerTableName: `${table}-ledger`,
        brakeParameterName: name,
        settings: {},
      }),
      ...localFunctionEnvironment({
        tableName: table,
        brakeParameterName: name,
        config,
        dynamoEndpoint: dynamoEndpoint(),
        ssmEndpoint: ssm.endpoint,
      }),
    });
    const deps = { ssm: deployedSsmClient(), doc: doc(), tableName: table, parameterName: name, log: () => {} };
    if (copyAgeMs !== undefined) await mirrorBrake({ ...deps, clock: () => Date.now() - copyAgeMs });
    const client = localClient(dynamoEndpoint());
    const tenant = uniqueKey('tenant');
    const apiKey = `sk-${uniqueKey('key')}`;
    await putTenant(client, table, { id: tenant, plan: 'team' });
    await putApiKey(client, table, apiKey, { tenant, user: 'alice', status: 'active' });
    // The operator flips the brake while the mirror is down: only SSM has it.
    ssm.parameters.set(name, { value: 'on', version: 2, modified: Date.now() });
    const authorize = async () => {
      const out = await createHandler(depsFromEnvironment())(
        authorizerEvent({ headers: { Authorization: `Bearer ${apiKey}` } }),
        lambdaContext(),
      );
      return { effect: out.policyDocument.Statement[0]?.Effect, code: out.context?.code };
    };
    return { name, authorize };
  }

  it('reads the parameter directly when the copy is older than the bound, and the flip reaches callers', async () => {
    const { authorize } = await deployed(BRAKE_MIRROR_STALE_MS + 1_000);
    const reads = ssm.calls.GetParameter ?? 0;
    expect(await authorize()).toEqual({ effect: 'Deny', code: 'brake' });
    expect((ssm.calls.GetParameter ?? 0) - reads).toBe(1);
  });

  it('reads the parameter directly when the mirror has never written a copy', async () => {
    const { authorize } = await deployed(undefined);
    expect(await authorize()).toEqual({ effect: 'Deny', code: 'brake' });
  });

  it('keeps to the copy while it is fresh: no SSM read on the request path', async () => {
    const { authorize } = await deployed(BRAKE_MIRROR_STALE_MS - 10_000);
    const reads = ssm.calls.GetParameter ?? 0;
    expect(await authorize()).toMatchObject({ effect: 'Allow' });
    expect(ssm.calls.GetParameter ?? 0).toBe(reads);
  });

  it('keeps the stale copy when SSM throttles the direct read too (one try, no wait)', async () => {
    const { authorize } = await deployed(BRAKE_MIRROR_STALE_MS + 1_000);
    const reads = ssm.calls.GetParameter ?? 0;
    throttleNext('GetParameter', Number.POSITIVE_INFINITY);
    try {
      expect(await authorize()).toMatchObject({ effect: 'Allow' });
    } finally {
      ssm.throttle = undefined;
    }
    expect((ssm.calls.GetParameter ?? 0) - reads).toBe(1);
  });
});
