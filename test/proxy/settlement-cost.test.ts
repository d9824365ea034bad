import { describe, expect, it } from 'vitest';
import { streamedChatCost } from '../../bench/cost';
import { dynamoEndpoint } from '../support/dynamo';

// What a deployment is billed for one admitted streamed chat request (the benchmark's four-layer
// plan, counted at the wire): the authorizer's and the reservation's writes, and a settlement of
// one transaction that reads nothing.
describe('DynamoDB calls of one streamed chat request', () => {
  it('are six UpdateItems and one TransactWriteItems, with no read', async () => {
    const f = await streamedChatCost(dynamoEndpoint(), 5);
    expect(f.byAction).toEqual({ UpdateItem: 6, TransactWriteItems: 1 });
    expect(f.readUnits).toBe(0);
  });
});
