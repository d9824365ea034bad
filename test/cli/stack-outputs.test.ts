/** `--stack`: the admin CLI finds the tables and the brake in the stack's outputs (lib/llm-rate-limiter.ts names them). */
import { describe, expect, it } from 'vitest';
import { namesFromOutputs } from '../../lib/cli/main';

const outputsOf = (...ids: string[]) =>
  ids.flatMap((id) => [
    { OutputKey: `${id}ApiUrl`, OutputValue: `https://${id}.example/live/v1` },
    { OutputKey: `${id}TableName`, OutputValue: `${id}-table` },
    { OutputKey: `${id}LedgerTableName`, OutputValue: `${id}-ledger` },
    { OutputKey: `${id}BrakeParameterName`, OutputValue: `${id}-brake` },
  ]);

describe('the names --stack finds', () => {
  it("are the limiter's table, usage ledger and brake parameter outputs", () => {
    // The ledger's output also ends in TableName: it is not taken for a second limiter.
    expect(namesFromOutputs('Llm-prod', outputsOf('Limiter'))).toEqual({
      table: 'Limiter-table',
      brake: 'Limiter-brake',
      ledger: 'Limiter-ledger',
    });
  });

  it('are found for a limiter whose id itself ends in Ledger', () => {
    expect(namesFromOutputs('Llm-prod', outputsOf('UsageLedger'))).toEqual({
      table: 'UsageLedger-table',
      brake: 'UsageLedger-brake',
      ledger: 'UsageLedger-ledger',
    });
  });

  it('are not guessed when the stack holds two limiters: the error names both and the flags to use', () => {
    expect(() => namesFromOutputs('Llm-prod', outputsOf('Limiter', 'Canary'))).toThrow(
      'stack Llm-prod has 2 limiters (Limiter, Canary): give --table and --brake-parameter from its outputs',
    );
  });
});
