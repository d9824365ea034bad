import { randomBytes } from 'node:crypto';
import type { Calendar } from '../../lambda/engine/calendar';
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DeleteCommand, DynamoDBDocumentClient, GetCommand, ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { GetParameterCommand, PutParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { Directory, hashKey, ID_PATTERN, putApiKey, putTenant } from '../../lambda/runtime/directory';
import { parseBrake } from '../../lambda/runtime/brake';
import { KEY_PREFIX, TABLE } from '../../lambda/engine/constants';
import { Limiter, layerKey } from '../../lambda/engine/limiter';
import { durationMs, type Limit } from '../../lambda/engine/limits';
import {
  applyOverrides,
  bucketName,
  type Layer,
  type LimiterConfig,
  type LimitSpec,
  limitCode,
  type Plan,
  parsePlan,
  periodSeconds,
} from '../../lambda/engine/plans';
import { LimitStore } from '../../lambda/engine/store';
import { type LedgerGrouping, type LedgerLine, readLedger, summarizeLedger } from '../../lambda/engine/ledger';
import { type Usage, usageOf } from '../../lambda/limits/usage';
import { sizeOf } from './format';

/** A mistake in what the operator asked for: printed as is, exit code 2, nothing written. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface AdminTargets {
  readonly dynamo: DynamoDBClient;
  readonly ssm: SSMClient;
  readonly tableName: string;
  readonly brakeParameterName: string;
  /** The usage ledger's table (`usage --from --to`). */
  readonly ledgerTableName?: string;
  /** The limiter configuration (plans), for plan checks and usage. */
  readonly config?: LimiterConfig;
  /** Item-key namespace, as the functions use (empty in a deployment). */
  readonly namespace?: string;
}

const KEY_ID_LENGTH = 12;
const keyId = (hash: string) => hash.slice(0, KEY_ID_LENGTH);

function checkId(what: string, id: string): void {
  if (!ID_PATTERN.test(id)) throw new UsageError(`${what} '${id}' is not valid: use 1-128 of letters, digits, . _ @ -`);
}

/** Plans are always checked: without the configuration there is nothing to check them against. */
function configOf(t: AdminTargets): LimiterConfig {
  if (!t.config)
    throw new UsageError(
      `no limiter configuration: table ${t.tableName} has none published (the construct publishes it at every ` +
        `deploy, npm start at start-up); deploy, or pass --config <file.json>`,
    );
  return t.config;
}

function checkPlan(t: AdminTargets, plan: string): void {
  const config = configOf(t);
  if (!config.plans[plan])
    throw new UsageError(`plan '${plan}' is not configured: known plans are ${Object.keys(config.plans).join(', ')}`);
}

/** One limit as it applies to a tenant: where it comes from and what it allows. */
export interface EffectiveLimit {
  readonly layer: Layer;
  readonly code: string;
  readonly route?: string;
  readonly counts: LimitSpec['counts'];
  readonly shape: Limit['shape'];
  /** In the limit's unit (usd in dollars). */
  readonly size: number;
  readonly periodSeconds: number;
  /** A calendar budget's period and time zone (it starts again at each period's first moment). */
  readonly calendar?: Calendar;
  readonly shadow: boolean;
  /** The tenant's plan, its overrides, or the system-wide global limits. */
  readonly from: 'plan' | 'override' | 'global';
}

export interface TenantView {
  readonly tenant: string;
  readonly plan: string;
  readonly overrides: unknown;
  readonly limits: readonly EffectiveLimit[];
}

/**
 * What operators do: tenants, keys, the brake, usage. Every write is conditional, so nothing is
 * written twice or half: a tenant is created only if absent, a key only for an existing tenant.
 */
export class Admin {
  private readonly doc: DynamoDBDocumentClient;

  constructor(private readonly t: AdminTargets) {
    this.doc = DynamoDBDocumentClient.from(t.dynamo);
  }

  async createTenant(id: string, plan: string): Promise<void> {
    checkId('tenant', id);
    checkPlan(this.t, plan);
    try {
      await putTenant(this.t.dynamo, this.t.tableName, { id, plan }, { onlyIfNew: true });
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException)
        throw new UsageError(`tenant '${id}' already exists: use 'tenants set-plan' to change its plan`);
      throw err;
    }
  }

  async setPlan(id: string, plan: string): Promise<void> {
    checkId('tenant', id);
    checkPlan(this.t, plan);
    await this.updateTenant(id, 'SET #plan = :plan', { '#plan': 'plan' }, { ':plan': plan });
  }

  /** Replaces the tenant's overrides (a plan-shaped JSON object), or removes them with `undefined`. */
  async setOverrides(id: string, overrides: unknown): Promise<void> {
    checkId('tenant', id);
    if (overrides === undefined) return this.updateTenant(id, 'REMOVE #o', { '#o': 'overrides' }, undefined);
    try {
      parsePlan(overrides, 'overrides');
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
    await this.updateTenant(id, 'SET #o = :o', { '#o': 'overrides' }, { ':o': overrides });
  }

  /** The tenant as stored (plan, overrides) and the limits that result: plan + overrides, then the global ones. */
  async showTenant(id: string): Promise<TenantView> {
    const stored = await this.storedTenant(id);
    const config = configOf(this.t);
    const plan = config.plans[stored.plan];
    if (!plan)
      throw new UsageError(
        `tenant '${id}' is on plan '${stored.plan}', which is not configured: its requests get 500 ` +
          `plan_unknown. Move it: tenants set-plan ${id} <${Object.keys(config.plans).join(' | ')}>`,
      );
    let overrides: Plan | undefined;
    try {
      overrides = stored.overrides === null ? undefined : parsePlan(stored.overrides, 'overrides');
    } catch (err) {
      throw new UsageError(
        `tenant '${id}' has overrides that do not parse (${(err as Error).message}): its requests get 500 ` +
          `tenant_config_invalid. Fix them: tenants set-overrides ${id} --file <overrides.json>, or --clear`,
      );
    }
    const effective = applyOverrides(plan, overrides);
    const overridden = (layer: readonly LimitSpec[] | undefined, spec: LimitSpec) =>
      (layer ?? []).some((o) => bucketName(o) === bucketName(spec));
    const limits: EffectiveLimit[] = [];
    const add = (layer: Layer, spec: LimitSpec, from: EffectiveLimit['from'], route?: string) =>
      limits.push({
        layer,
        code: limitCode(layer, spec),
        ...(route ? { route } : {}),
        counts: spec.counts,
        shape: spec.limit.shape,
        size: spec.counts === 'usd' ? sizeOf(spec.limit) / 1_000_000 : sizeOf(spec.limit),
        periodSeconds: periodSeconds(spec.limit),
        ...(spec.limit.shape === 'sliding_window' && spec.limit.calendar ? { calendar: spec.limit.calendar } : {}),
        shadow: spec.shadow ?? false,
        from,
      });
    for (const spec of effective.tenant ?? [])
      add('tenant', spec, overridden(overrides?.tenant, spec) ? 'override' : 'plan');
    for (const spec of effective.user ?? []) add('user', spec, overridden(overrides?.user, spec) ? 'override' : 'plan');
    for (const [route, specs] of Object.entries(effective.endpoints ?? {}))
      for (const spec of specs)
        add('endpoint', spec, overridden(overrides?.endpoints?.[route], spec) ? 'override' : 'plan', route);
    for (const spec of config.global?.limits ?? []) add('global', spec, 'global');
    return { tenant: id, plan: stored.plan, overrides: stored.overrides, limits };
  }

  private async storedTenant(id: string): Promise<{ plan: string; overrides: unknown }> {
    checkId('tenant', id);
    const out = await this.doc.send(
      new GetCommand({
        TableName: this.t.tableName,
        Key: { [TABLE.partitionKey]: KEY_PREFIX.tenant + id },
        ConsistentRead: true,
      }),
    );
    if (!out.Item) throw new UsageError(`tenant '${id}' does not exist`);
    return { plan: String(out.Item.plan), overrides: out.Item.overrides ?? null };
  }

  /** Creates a key for an existing tenant; returns the key (shown once, never stored) and its id. */
  async createKey(tenant: string, user: string): Promise<{ key: string; id: string }> {
    checkId('tenant', tenant);
    checkId('user', user);
    await this.storedTenant(tenant);
    const key = `sk-lrl-${randomBytes(32).toString('base64url')}`;
    await putApiKey(this.t.dynamo, this.t.tableName, key, { tenant, user, status: 'active' }, { onlyIfNew: true });
    return { key, id: keyId(hashKey(key)) };
  }

  /** A tenant's keys (by id; the keys themselves are not stored). Scans the table: an admin operation. */
  async listKeys(tenant: string): Promise<{ id: string; user: string; status: string; created: string }[]> {
    checkId('tenant', tenant);
    return (await this.scanKeys({ tenant })).map((i) => ({
      id: keyId(String(i[TABLE.partitionKey]).slice(KEY_PREFIX.apiKey.length)),
      user: String(i.user),
      status: String(i.status),
      created: String(i.created),
    }));
  }

  /** Revokes by key id (from `keys list`) or by the key itself. Takes effect within the key cache TTL. */
  async revokeKey(idOrKey: string): Promise<{ id: string; tenant: string; user: string }> {
    const hash = idOrKey.startsWith('sk-') ? hashKey(idOrKey) : undefined;
    if (!hash && !/^[0-9a-f]{12,64}$/.test(idOrKey))
      throw new UsageError(`'${idOrKey}' is neither a key id (hex, from 'keys list') nor a key`);
    const matches = hash
      ? [{ [TABLE.partitionKey]: KEY_PREFIX.apiKey + hash }]
      : await this.scanKeys({ idPrefix: idOrKey });
    if (matches.length !== 1)
      throw new UsageError(
        matches.length
          ? `key id '${idOrKey}' matches ${matches.length} keys: give more of it`
          : `no key matches '${hash ? 'the given key' : idOrKey}'`,
      );
    try {
      const out = await this.doc.send(
        new UpdateCommand({
          TableName: this.t.tableName,
          Key: { [TABLE.partitionKey]: matches[0]![TABLE.partitionKey] },
          UpdateExpression: 'SET #s = :revoked, revokedAt = :now',
          ConditionExpression: 'attribute_exists(#pk)',
          ExpressionAttributeNames: { '#s': 'status', '#pk': TABLE.partitionKey },
          ExpressionAttributeValues: { ':revoked': 'revoked', ':now': new Date().toISOString() },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return {
        id: keyId(String(out.Attributes![TABLE.partitionKey]).slice(KEY_PREFIX.apiKey.length)),
        tenant: String(out.Attributes!.tenant),
        user: String(out.Attributes!.user),
      };
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException) throw new UsageError('no such key');
      throw err;
    }
  }

  async brakeOn(forDuration: string | undefined, reason: string | undefined): Promise<Record<string, unknown>> {
    let until: string | undefined;
    if (forDuration !== undefined) {
      let ms: number;
      try {
        ms = durationMs(forDuration);
      } catch {
        throw new UsageError(`--for '${forDuration}' is not a duration: use e.g. 30m, 2h30m, 1d`);
      }
      if (!(ms > 0)) throw new UsageError('--for must be longer than zero');
      until = new Date(Date.now() + ms).toISOString();
    }
    const value = { enabled: true, ...(reason ? { reason } : {}), ...(until ? { until } : {}) };
    // Only values the functions read as a brake are ever written.
    if (!parseBrake(JSON.stringify(value)))
      throw new UsageError('that brake value would not be understood: check --for and --reason');
    await this.t.ssm.send(
      new PutParameterCommand({
        Name: this.t.brakeParameterName,
        Value: JSON.stringify(value),
        Type: 'String',
        Overwrite: true,
      }),
    );
    return value;
  }

  /**
   * Resets a user's buckets (and penalty box), or a tenant's own and per-tenant endpoint buckets,
   * to full, by deleting their items: a wrongly settled debt or a lockout an operator forgives.
   * Returns the items that existed and were removed.
   */
  async resetBuckets(tenant: string, user: string | undefined): Promise<string[]> {
    checkId('tenant', tenant);
    if (user !== undefined) checkId('user', user);
    const ns = this.t.namespace ?? '';
    const identity = { tenant, user: user ?? '' };
    const keys =
      user !== undefined
        ? [layerKey.user(identity, ns)]
        : [
            layerKey.tenant(identity, ns),
            ...Object.entries(this.t.config?.endpoints ?? {})
              .filter(([, e]) => e.scope !== 'global')
              .map(([route]) => layerKey.endpoint(identity, route, 'tenant', ns)),
          ];
    const removed: string[] = [];
    for (const key of keys) {
      const out = await this.doc.send(
        new DeleteCommand({
          TableName: this.t.tableName,
          Key: { [TABLE.partitionKey]: KEY_PREFIX.bucket + key },
          ReturnValues: 'ALL_OLD',
        }),
      );
      if (out.Attributes) removed.push(key);
    }
    return removed;
  }

  async brakeOff(): Promise<void> {
    await this.t.ssm.send(
      new PutParameterCommand({ Name: this.t.brakeParameterName, Value: 'off', Type: 'String', Overwrite: true }),
    );
  }

  async brakeStatus(): Promise<Record<string, unknown>> {
    const out = await this.t.ssm.send(new GetParameterCommand({ Name: this.t.brakeParameterName }));
    const raw = out.Parameter?.Value ?? '';
    const state = parseBrake(raw);
    if (!state)
      return {
        braked: true,
        value: raw,
        state:
          'unreadable: every AI route is braked (fail safe) until the value is on or off: run brake on or brake off',
      };
    const active = state.enabled && (state.until === undefined || state.until > Date.now());
    return {
      braked: active,
      ...(state.reason ? { reason: state.reason } : {}),
      ...(state.until ? { until: new Date(state.until).toISOString() } : {}),
      value: raw,
    };
  }

  /**
   * The usage ledger of `tenant` (or of its `user`) from day `from` to day `to` (YYYY-MM-DD, both
   * included, in the tenant's ledger zone), summed by `by` or into one line, with the total.
   */
  async ledger(
    tenant: string,
    from: string,
    to: string,
    by?: LedgerGrouping,
    user?: string,
  ): Promise<{ lines: LedgerLine[]; total: LedgerLine; timeZones: string[] }> {
    checkId('tenant', tenant);
    if (user !== undefined) checkId('user', user);
    if (!this.t.ledgerTableName)
      throw new UsageError(
        'which ledger table? give --ledger-table <name> or --stack <name> (output <id>LedgerTableName)',
      );
    for (const [flag, day] of [
      ['--from', from],
      ['--to', to],
    ] as const)
      if (
        !/^\d{4}-\d{2}-\d{2}$/.test(day) ||
        Number.isNaN(Date.parse(`${day}T00:00:00Z`)) ||
        new Date(`${day}T00:00:00Z`).toISOString().slice(0, 10) !== day
      )
        throw new UsageError(`${flag} ${day}: give a day as YYYY-MM-DD, e.g. 2026-12-01`);
    if (to < from) throw new UsageError(`--to ${to} is before --from ${from}: give the first day, then the last`);
    const all = await readLedger(this.t.dynamo, this.t.ledgerTableName, tenant, from, to, this.t.namespace ?? '');
    const rows = user === undefined ? all : all.filter((r) => r.user === user);
    return {
      lines: by ? summarizeLedger(rows, by) : [],
      total: summarizeLedger(rows)[0]!,
      timeZones: [...new Set(rows.map((r) => r.timeZone))].sort(),
    };
  }

  async usage(tenant: string, user?: string): Promise<Usage> {
    const config = configOf(this.t);
    checkId('tenant', tenant);
    if (user !== undefined) checkId('user', user);
    const store = new LimitStore({ client: this.t.dynamo, tableName: this.t.tableName });
    const record = await new Directory({ client: this.t.dynamo, tableName: this.t.tableName, cacheMs: 0 }).tenant(
      tenant,
    );
    if (!record) throw new UsageError(`tenant '${tenant}' does not exist`);
    const limiter = new Limiter({ store, config, namespace: this.t.namespace ?? '' });
    try {
      return await usageOf(store, limiter, config, record, user, this.t.namespace ?? '', 'operator');
    } catch (err) {
      throw new UsageError((err as Error).message);
    }
  }

  private async updateTenant(
    id: string,
    expression: string,
    names: Record<string, string>,
    values: Record<string, unknown> | undefined,
  ): Promise<void> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.t.tableName,
          Key: { [TABLE.partitionKey]: KEY_PREFIX.tenant + id },
          UpdateExpression: expression,
          ConditionExpression: 'attribute_exists(#pk)',
          ExpressionAttributeNames: { ...names, '#pk': TABLE.partitionKey },
          ...(values ? { ExpressionAttributeValues: values } : {}),
        }),
      );
    } catch (err) {
      if (err instanceof ConditionalCheckFailedException)
        throw new UsageError(`tenant '${id}' does not exist: create it with 'tenants create'`);
      throw err;
    }
  }

  private async scanKeys(filter: { tenant?: string; idPrefix?: string }): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    let start: Record<string, unknown> | undefined;
    const prefix = KEY_PREFIX.apiKey + (filter.idPrefix ?? '');
    do {
      const out = await this.doc.send(
        new ScanCommand({
          TableName: this.t.tableName,
          FilterExpression: filter.tenant ? 'begins_with(#pk, :p) AND tenant = :t' : 'begins_with(#pk, :p)',
          ExpressionAttributeNames: { '#pk': TABLE.partitionKey },
          ExpressionAttributeValues: { ':p': prefix, ...(filter.tenant ? { ':t': filter.tenant } : {}) },
          ...(start ? { ExclusiveStartKey: start } : {}),
        }),
      );
      items.push(...(out.Items ?? []));
      start = out.LastEvaluatedKey;
    } while (start);
    return items;
  }
}
