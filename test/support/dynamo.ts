import { randomUUID } from 'node:crypto';
import { inject } from 'vitest';
import { LimitStore, type LimitStoreOptions } from '../../lambda/engine/store';
import { localClient } from '../../local/dynamodb-local';

export const dynamoEndpoint = (): string => inject('dynamoEndpoint');
export const tableName = (): string => inject('tableName');
export const ledgerTableName = (): string => inject('ledgerTableName');

/** A unique key prefix per test, so tests can share one table and run in parallel. */
export const uniqueKey = (label = 'k'): string => `${label}-${randomUUID()}`;

export function testStore(options: Partial<Omit<LimitStoreOptions, 'client' | 'tableName'>> = {}): LimitStore {
  return new LimitStore({ client: localClient(dynamoEndpoint()), tableName: tableName(), ...options });
}
