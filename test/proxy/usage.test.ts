/**
 * What is settled from the usage an upstream reports (lambda/proxy/usage.ts): the figures it
 * reports where believable, the bound where not, never below what the relay saw. Cases found by
 * mutation testing (docs/testing.md) that the end-to-end classes did not pin down.
 */
import { describe, expect, it } from 'vitest';
import { NO_AUDIO } from '../../lambda/proxy/pricing';
import { type ReportedUsage, settledUsage, type UsageBounds } from '../../lambda/proxy/usage';

const bounds: UsageBounds = { input: 100, output: 50, outputMax: 4_000, outputless: false, audio: NO_AUDIO };
const seen = { output: 10, provesOutput: false };

describe('usage reported by the upstream', () => {
  it('is taken where believable, with its cached part, and flags output above the cap sent', () => {
    const reported = {
      prompt_tokens: 80,
      completion_tokens: 30,
      prompt_tokens_details: { cached_tokens: 64 },
      completion_tokens_details: { reasoning_tokens: 12 },
    };
    expect(settledUsage(reported, seen, bounds)).toEqual({
      input: 80,
      output: 30,
      cachedInput: 64,
      reasoning: 12,
      audioInput: 0,
      audioOutput: 0,
      rejected: [],
      unknown: false,
      overCap: false,
    });
    expect(settledUsage({ prompt_tokens: 80, completion_tokens: 50 }, seen, bounds).overCap).toBe(false);
    const ignoredCap = settledUsage({ prompt_tokens: 80, completion_tokens: 51 }, seen, bounds);
    expect([ignoredCap.output, ignoredCap.overCap, ignoredCap.rejected]).toEqual([51, true, []]);
  });

  it('takes reasoning tokens (the usage ledger records them) only as a part of the output it believes', () => {
    const reasoning = (r: unknown) =>
      settledUsage(
        { prompt_tokens: 80, completion_tokens: 30, completion_tokens_details: { reasoning_tokens: r } },
        seen,
        bounds,
      ).reasoning;
    expect(reasoning(30)).toBe(30);
    expect([reasoning(31), reasoning(-1), reasoning('12'), reasoning(1.5)]).toEqual([0, 0, 0, 0]);
  });

  it.each<[string, unknown]>([
    ['negative', -1],
    ['fractional', 1.5],
    ['a string', '30'],
    ['above what the request can produce', 4_001],
  ])('is not believed when %s: settled at the bound and logged as rejected', (_what, value) => {
    const reported = { prompt_tokens: value, completion_tokens: value } as ReportedUsage;
    const settled = settledUsage(reported, seen, bounds);
    expect([settled.input, settled.output, settled.rejected, settled.unknown, settled.overCap]).toEqual([
      100,
      50,
      ['prompt_tokens', 'completion_tokens'],
      false,
      false,
    ]);
    // A cached part larger than the input it belongs to is not believed either: all input is priced in full.
    expect(
      settledUsage(
        { prompt_tokens: 10, completion_tokens: 1, prompt_tokens_details: { cached_tokens: 11 } },
        seen,
        bounds,
      ).cachedInput,
    ).toBe(0);
  });

  it('is never below the output the relay saw', () => {
    expect(
      settledUsage({ prompt_tokens: 80, completion_tokens: 3 }, { output: 10, provesOutput: true }, bounds).output,
    ).toBe(10);
    expect(
      settledUsage({ prompt_tokens: 80, completion_tokens: 3 }, { output: 10, floor: 4, provesOutput: true }, bounds)
        .output,
    ).toBe(4);
  });

  it('without completion_tokens is honest only for embeddings', () => {
    const embeddings = { ...bounds, output: 0, outputless: true };
    expect(settledUsage({ prompt_tokens: 8 }, { output: 0, provesOutput: true }, embeddings)).toMatchObject({
      input: 8,
      output: 0,
      rejected: [],
    });
    expect(settledUsage({ prompt_tokens: 8 }, seen, bounds)).toMatchObject({
      output: 50,
      rejected: ['completion_tokens'],
    });
    // An embeddings upstream that does report completion tokens is read like any other.
    expect(
      settledUsage({ prompt_tokens: 8, completion_tokens: 2 }, { output: 0, provesOutput: true }, embeddings).output,
    ).toBe(2);
  });

  it.each<[string, unknown]>([
    ['missing', undefined],
    ['null', null],
    ['a number', 42],
    ['a string', 'usage'],
  ])('when %s is unknown: settled at the bound, nothing rejected, not over the cap', (_what, reported) => {
    expect(settledUsage(reported as ReportedUsage, seen, bounds)).toEqual({
      input: 100,
      output: 50,
      cachedInput: 0,
      reasoning: 0,
      audioInput: 0,
      audioOutput: 0,
      rejected: [],
      unknown: true,
      overCap: false,
    });
    // Unless the answer arrived whole: then its output is what was seen.
    expect(settledUsage(reported as ReportedUsage, { output: 10, provesOutput: true }, bounds).output).toBe(10);
  });

  it('prices audio at the dearest reading unless its part is reported', () => {
    const audio = { ...bounds, audio: { input: true, output: true } };
    const reported = {
      prompt_tokens: 80,
      completion_tokens: 30,
      prompt_tokens_details: { cached_tokens: 20, audio_tokens: 40 },
      completion_tokens_details: { audio_tokens: 25 },
    };
    expect(settledUsage(reported, seen, audio)).toMatchObject({ cachedInput: 20, audioInput: 40, audioOutput: 25 });
    // Not reported, or more than the uncached input: all uncached input and all output are audio.
    const unreported = {
      prompt_tokens: 80,
      completion_tokens: 30,
      prompt_tokens_details: { cached_tokens: 20, audio_tokens: 61 },
    };
    expect(settledUsage(unreported, seen, audio)).toMatchObject({ cachedInput: 20, audioInput: 60, audioOutput: 30 });
    expect(settledUsage(undefined, seen, audio)).toMatchObject({ cachedInput: 0, audioInput: 100, audioOutput: 50 });
  });
});
