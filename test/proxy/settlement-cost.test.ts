import { describe, expect, it } from 'vitest';
import { streamedChatCost } from '../../bench/cost';
import { dynamoEndpoint } from '../support/dynamo';

// What a deployment is billed for one admitted streamed chat request (the benchmark's four-layer
// plan, one key, counted at the wire).
describe('DynamoDB calls of one streamed chat request', () => {
  it('without leases: six UpdateItems and one TransactWriteItems, with no read', async () => {
    const f = await streamedChatCost(dynamoEndpoint(), 5, 1, 0);
    expect(f.byAction).toEqual({ UpdateItem: 6, TransactWriteItems: 1 });
    expect(f.readUnits).toBe(0);
  });

  it('with leases (the default): a write every few requests, and still no read', async () => {
    const f = await streamedChatCost(dynamoEndpoint(), 40);
    expect(f.requests).toBeLessThan(1);
    expect(f.readUnits).toBe(0);
    expect(Object.keys(f.byAction).every((a) => a === 'UpdateItem' || a === 'TransactWriteItems')).toBe(true);
  });
});
