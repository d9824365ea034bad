/**
 * The upstream's `usage` is a claim, not a fact: a broken or hostile upstream (or one behind a
 * misbehaving gateway) can report a string, a negative number, nothing, or ten million tokens.
 * Settlement takes a reported figure only when it is a whole number between 0 and the most the
 * request could have produced; otherwise it uses the proxy's own count and says which field it
 * did not believe.
 */

/** `usage` as an upstream sent it: nothing here is trusted yet. */
export interface ReportedUsage {
  readonly prompt_tokens?: unknown;
  readonly completion_tokens?: unknown;
}

/** The most a request can be billed: the input bound and n x (max_tokens or the model's maximum). */
export interface UsageBounds {
  readonly input: number;
  readonly output: number;
}

export interface SettledUsage {
  readonly input: number;
  readonly output: number;
  /** Reported fields that were not believed (absent fields are not listed when no usage came at all). */
  readonly rejected: readonly ('prompt_tokens' | 'completion_tokens')[];
}

/** A reported count when it is a whole number in [0, max]; undefined otherwise. */
function believable(value: unknown, max: number): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= max ? value : undefined;
}

/** Reported usage where believable, else the proxy's count (never above the bound). */
export function settledUsage(
  reported: ReportedUsage | undefined,
  counted: { input: number; output: number },
  bounds: UsageBounds,
): SettledUsage {
  const fallback = { input: Math.min(counted.input, bounds.input), output: Math.min(counted.output, bounds.output) };
  if (reported === undefined || reported === null || typeof reported !== 'object') return { ...fallback, rejected: [] };
  const rejected: ('prompt_tokens' | 'completion_tokens')[] = [];
  const input = believable(reported.prompt_tokens, bounds.input);
  if (input === undefined) rejected.push('prompt_tokens');
  const output = believable(reported.completion_tokens, bounds.output);
  if (output === undefined) rejected.push('completion_tokens');
  return { input: input ?? fallback.input, output: output ?? fallback.output, rejected };
}
