/**
 * The upstream's `usage` is a claim, not a fact: a broken or hostile upstream (or one behind a
 * misbehaving gateway) can report a string, a negative number, nothing, or ten million tokens.
 * What is settled is never below what the upstream can have billed:
 * - reported figures are taken when they are whole numbers no larger than the request could
 *   have produced (output up to the model's maximum: an upstream that ignored the cap still
 *   billed it, and it is flagged), and never below what the relay saw on its output channels;
 * - when usage is missing or not believable, the request is settled at its bound (the input
 *   bound and the output cap), unless the answer arrived whole from a model without hidden
 *   reasoning, which proves its output is what was seen.
 */
import type { AudioUse, TokenBreakdown } from './pricing';

/** `usage` as an upstream sent it: nothing here is trusted yet. */
export interface ReportedUsage {
  readonly prompt_tokens?: unknown;
  readonly completion_tokens?: unknown;
  readonly prompt_tokens_details?: unknown;
  readonly completion_tokens_details?: unknown;
}

/** The most a request can be billed. */
export interface UsageBounds {
  /** The input bound (counted exactly, or bounded from above). */
  readonly input: number;
  /** The output cap sent upstream: n x the cap per choice (plus billed predictions). */
  readonly output: number;
  /** The most the model can produce whatever the cap: n x its maximum output (plus predictions). */
  readonly outputMax: number;
  /** Embeddings: no output, and usage without completion_tokens is the honest shape. */
  readonly outputless: boolean;
  readonly audio: AudioUse;
}

/** What the relay saw of the answer. */
export interface SeenOutput {
  /**
   * Output tokens counted on every channel seen (content, tool calls, refusals, reasoning, audio
   * transcripts), from above where the tokenizer is not known: what is settled when no usage came.
   */
  readonly output: number;
  /**
   * The fewest tokens that output can be: the floor under a reported figure. The count itself
   * where the tokenizer is known; for `utf8_bytes`, a token per 128 bytes (the longest token of
   * o200k_base and cl100k_base), never above any tokenizer's count whose tokens are that long at most.
   * @default output
   */
  readonly floor?: number;
  /** The answer arrived whole (every choice finished, the body ended) and the model hides no reasoning. */
  readonly provesOutput: boolean;
}

export interface SettledUsage extends TokenBreakdown {
  /** Reported fields that were not believed. */
  readonly rejected: readonly string[];
  /** No usage came: settled at the bound (or on what arrived, when it proves the output). */
  readonly unknown: boolean;
  /** The upstream reported more output than the cap it was sent (it ignored the cap). */
  readonly overCap: boolean;
  /** Of the output, reasoning tokens as reported where believable (0 where not reported). */
  readonly reasoning: number;
}

/** A reported count when it is a whole number in [0, max]; undefined otherwise. */
function believable(value: unknown, max: number): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= max ? value : undefined;
}

const detail = (details: unknown, field: string): unknown =>
  typeof details === 'object' && details !== null ? (details as Record<string, unknown>)[field] : undefined;

/**
 * The parts billed at other rates: reported where believable; where not, the dearest reading
 * (no cached input; all audio when the request used audio).
 */
function parts(reported: ReportedUsage | undefined, input: number, output: number, audio: AudioUse) {
  const cachedInput = believable(detail(reported?.prompt_tokens_details, 'cached_tokens'), input) ?? 0;
  const audioInputReported = believable(detail(reported?.prompt_tokens_details, 'audio_tokens'), input - cachedInput);
  const audioOutputReported = believable(detail(reported?.completion_tokens_details, 'audio_tokens'), output);
  return {
    cachedInput,
    reasoning: believable(detail(reported?.completion_tokens_details, 'reasoning_tokens'), output) ?? 0,
    audioInput: audio.input ? (audioInputReported ?? input - cachedInput) : 0,
    audioOutput: audio.output ? (audioOutputReported ?? output) : 0,
  };
}

/** Reported usage where believable, else the bound; output never below what was seen. */
export function settledUsage(reported: ReportedUsage | undefined, seen: SeenOutput, bounds: UsageBounds): SettledUsage {
  const outputSeen = Math.min(seen.output, bounds.outputMax);
  const outputFloor = Math.min(seen.floor ?? seen.output, outputSeen);
  if (reported === undefined || reported === null || typeof reported !== 'object') {
    const output = seen.provesOutput ? outputSeen : Math.max(bounds.output, outputSeen);
    return {
      input: bounds.input,
      output,
      ...parts(undefined, bounds.input, output, bounds.audio),
      rejected: [],
      unknown: true,
      overCap: false,
    };
  }
  const rejected: string[] = [];
  const reportedInput = believable(reported.prompt_tokens, bounds.input);
  if (reportedInput === undefined) rejected.push('prompt_tokens');
  const honestlyAbsent = bounds.outputless && reported.completion_tokens === undefined;
  const reportedOutput = honestlyAbsent ? 0 : believable(reported.completion_tokens, bounds.outputMax);
  if (reportedOutput === undefined) rejected.push('completion_tokens');
  const input = reportedInput ?? bounds.input;
  const output = Math.max(reportedOutput ?? bounds.output, outputFloor);
  return {
    input,
    output,
    ...parts(reported, input, output, bounds.audio),
    rejected,
    unknown: false,
    overCap: reportedOutput !== undefined && reportedOutput > bounds.output,
  };
}
