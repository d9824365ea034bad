import { describe, expect, it } from 'vitest';
import { streamedChatCost } from '../../bench/cost';
import { dynamoEndpoint } from '../support/dynamo';

// What a deployment is billed for one admitted streamed chat request (the benchmark's four-layer
// plan, one key, counted at the wire), and of it what the usage ledger adds: one UpdateItem at
// the request's end (docs/design.md, "Usage ledger").
describe('DynamoDB calls of one streamed chat request', () => {
  it("without leases: six UpdateItems and one TransactWriteItems, with no read, and the ledger's UpdateItem", async () => {
    const f = await streamedChatCost(dynamoEndpoint(), 5, 1, 0);
    // Besides the model's cooldown at the upstream, read at most once a second (upstream-feedback.ts).
    const { GetItem = 0, ...writes } = f.byAction;
    expect(writes).toEqual({ UpdateItem: 6 + 1, TransactWriteItems: 1 });
    expect(GetItem).toBeLessThanOrEqual(1);
    expect(f.ledger).toMatchObject({ requests: 1, writeUnits: 1 });
    expect(f.readUnits).toBeLessThanOrEqual(0.5);
  });

  it("with leases (the default): a write every few requests besides the ledger's, and one read a second at most", async () => {
    const f = await streamedChatCost(dynamoEndpoint(), 40);
    expect(f.requests - f.ledger.requests).toBeLessThan(1);
    expect(f.ledger.requests).toBe(1);
    // The only read: the model's cooldown at the upstream (upstream-feedback.ts), at most once a second per container.
    expect(f.byAction.GetItem ?? 0).toBeLessThanOrEqual(0.05);
    expect(f.readUnits).toBeLessThanOrEqual(0.025);
    expect(Object.keys(f.byAction).every((a) => ['UpdateItem', 'TransactWriteItems', 'GetItem'].includes(a))).toBe(
      true,
    );
  });

  it('with ledgerFlush, a busy container writes the ledger far less than once a request', async () => {
    const f = await streamedChatCost(dynamoEndpoint(), 200, 1, undefined, 1);
    expect(f.ledger.requests).toBeLessThan(0.2);
  });
});
