import { describe, expect, it } from 'vitest';
import { streamedChatCost } from '../../bench/cost';
import { dynamoEndpoint } from '../support/dynamo';

// What a deployment is billed for one admitted streamed chat request (the benchmark's four-layer
// plan, one key, counted at the wire), and of it what the usage ledger adds: one UpdateItem at
// the request's end (docs/design.md, "Usage ledger").
describe('DynamoDB calls of one streamed chat request', () => {
  it("without leases: six UpdateItems and one TransactWriteItems, with no read, and the ledger's UpdateItem", async () => {
    const f = await streamedChatCost(dynamoEndpoint(), 5, 1, 0);
    expect(f.byAction).toEqual({ UpdateItem: 6 + 1, TransactWriteItems: 1 });
    expect(f.ledger).toMatchObject({ requests: 1, writeUnits: 1 });
    expect(f.readUnits).toBe(0);
  });

  it("with leases (the default): a write every few requests, and still no read, besides the ledger's write", async () => {
    const f = await streamedChatCost(dynamoEndpoint(), 40);
    expect(f.requests - f.ledger.requests).toBeLessThan(1);
    expect(f.ledger.requests).toBe(1);
    expect(f.readUnits).toBe(0);
    expect(Object.keys(f.byAction).every((a) => a === 'UpdateItem' || a === 'TransactWriteItems')).toBe(true);
  });

  it('with ledgerFlush, a busy container writes the ledger far less than once a request', async () => {
    const f = await streamedChatCost(dynamoEndpoint(), 200, 1, undefined, 1);
    expect(f.ledger.requests).toBeLessThan(0.2);
  });
});
