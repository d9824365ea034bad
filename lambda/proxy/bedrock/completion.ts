/**
 * Converse's answer -> the canonical one: a `chat.completion` body, or `chat.completion.chunk`
 * SSE events ending with a usage chunk and `[DONE]`, exactly what an OpenAI-compatible upstream
 * sends, so the relay and settlement read Bedrock like any other upstream. The client's own model
 * name is echoed, never the Bedrock model id (an ARN would name the operators' account).
 * Stream events: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_ConverseStreamOutput.html
 */
import type { ContentBlock, ConverseStreamOutput, StopReason, TokenUsage } from '@aws-sdk/client-bedrock-runtime';

type Json = Record<string, unknown>;

/** Bedrock's stream ended without its closing events (messageStop, then metadata): the answer is cut. */
export class BedrockStreamError extends Error {
  constructor(what: string, options?: ErrorOptions) {
    super(`Bedrock's stream ${what}`, options);
    this.name = 'BedrockStreamError';
  }
}

/**
 * stopReason -> finish_reason. The model ran out of context: `length`, as OpenAI says for a cut
 * answer. Malformed output: the model did stop, its output is what it is (`stop`), and a malformed
 * tool call is still a tool call (`tool_calls`): a client validates arguments, as it must with
 * OpenAI's non-strict tools. Any reason added later: `stop`.
 * https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_MessageStopEvent.html
 */
const FINISH: Record<StopReason, string> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  model_context_window_exceeded: 'length',
  tool_use: 'tool_calls',
  malformed_tool_use: 'tool_calls',
  content_filtered: 'content_filter',
  guardrail_intervened: 'content_filter',
  malformed_model_output: 'stop',
};

export const finishReason = (stop: string | undefined): string => FINISH[stop as StopReason] ?? 'stop';

const count = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);

/**
 * Converse usage -> OpenAI usage. Bedrock's inputTokens leaves out the tokens read from and
 * written to the prompt cache, which are billed too (reads cheaper, writes dearer than input), so
 * prompt_tokens is their sum, cached_tokens the reads (as OpenAI reports a cache hit), and the
 * writes are named in `cache_write_tokens` (OpenAI has no field: they are priced as input unless
 * the price table says otherwise). The adapter sends no cachePoint, so writes come only from a
 * model that caches on its own. https://docs.aws.amazon.com/bedrock/latest/userguide/prompt-caching.html
 * Figures that are not numbers are passed as sent: settlement disbelieves them.
 */
export function chatUsage(usage: TokenUsage): Json {
  const input = count(usage.inputTokens);
  const output = count(usage.outputTokens);
  const read = count(usage.cacheReadInputTokens) ?? 0;
  const write = count(usage.cacheWriteInputTokens) ?? 0;
  const prompt = input === undefined ? usage.inputTokens : input + read + write;
  return {
    prompt_tokens: prompt,
    completion_tokens: usage.outputTokens,
    ...(typeof prompt === 'number' && output !== undefined ? { total_tokens: prompt + output } : {}),
    prompt_tokens_details: { cached_tokens: read, cache_write_tokens: write },
  };
}

/** What every chunk and completion carries. */
export interface AnswerIds {
  readonly id: string;
  readonly model: string;
  readonly created: number;
}

/** Converse's whole answer -> a chat.completion body. */
export function toCompletion(
  answer: { output?: { message?: { content?: ContentBlock[] } }; stopReason?: string; usage?: TokenUsage },
  ids: AnswerIds,
): Json {
  let content = '';
  let reasoning = '';
  const toolCalls: Json[] = [];
  for (const block of answer.output?.message?.content ?? []) {
    if (typeof block.text === 'string') content += block.text;
    else if (block.reasoningContent?.reasoningText?.text) reasoning += block.reasoningContent.reasoningText.text;
    else if (block.toolUse)
      toolCalls.push({
        id: block.toolUse.toolUseId,
        type: 'function',
        function: { name: block.toolUse.name, arguments: JSON.stringify(block.toolUse.input ?? {}) },
      });
  }
  const message: Json = {
    role: 'assistant',
    content: content || (toolCalls.length ? null : ''),
    ...(reasoning ? { reasoning_content: reasoning } : {}),
    ...(toolCalls.length ? { tool_calls: toolCalls } : {}),
  };
  return {
    id: ids.id,
    object: 'chat.completion',
    created: ids.created,
    model: ids.model,
    choices: [{ index: 0, message, finish_reason: finishReason(answer.stopReason) }],
    ...(answer.usage ? { usage: chatUsage(answer.usage) } : {}),
  };
}

/** Exceptions ConverseStream may send as events (the SDK throws them; a raw reader might not). */
const STREAM_EXCEPTIONS = [
  'internalServerException',
  'modelStreamErrorException',
  'serviceUnavailableException',
  'throttlingException',
  'validationException',
] as const;

/**
 * ConverseStream's events -> canonical SSE events, one event at a time. Each toolUse block becomes
 * the next tool call index, announced with its id and name, then its input as argument deltas, as
 * OpenAI streams tool calls. Reasoning text streams as `reasoning_content` (the relay counts it as
 * output); a redacted or signed reasoning block has nothing to show.
 */
export class ConverseStreamTranslator {
  private announced = false;
  private stopped = false;
  private metered = false;
  private readonly toolIndex = new Map<number, number>();

  constructor(private readonly ids: AnswerIds) {}

  event(event: ConverseStreamOutput): string[] {
    for (const name of STREAM_EXCEPTIONS)
      if (event[name as keyof ConverseStreamOutput]) throw new BedrockStreamError(`sent ${name}`);
    if (event.messageStart) return this.delta({});
    if (event.contentBlockStart?.start?.toolUse) {
      const { toolUseId, name } = event.contentBlockStart.start.toolUse;
      const index = this.toolIndex.size;
      this.toolIndex.set(event.contentBlockStart.contentBlockIndex ?? -1, index);
      return this.delta({
        tool_calls: [{ index, id: toolUseId, type: 'function', function: { name, arguments: '' } }],
      });
    }
    const delta = event.contentBlockDelta?.delta;
    if (delta) {
      if (typeof delta.text === 'string') return this.delta({ content: delta.text });
      if (delta.reasoningContent?.text) return this.delta({ reasoning_content: delta.reasoningContent.text });
      if (delta.toolUse) {
        const index = this.toolIndex.get(event.contentBlockDelta?.contentBlockIndex ?? -1);
        if (index === undefined) throw new BedrockStreamError('sent tool input for a block it never started');
        return this.delta({ tool_calls: [{ index, function: { arguments: delta.toolUse.input ?? '' } }] });
      }
      return [];
    }
    if (event.messageStop) {
      this.stopped = true;
      return this.delta({}, finishReason(event.messageStop.stopReason));
    }
    if (event.metadata?.usage) {
      this.metered = true;
      return [this.sse({ ...this.head(), choices: [], usage: chatUsage(event.metadata.usage) })];
    }
    return [];
  }

  /** The stream ended: `[DONE]` when it ended as Bedrock ends one; otherwise it broke off, and this throws. */
  end(): string[] {
    if (!this.stopped) throw new BedrockStreamError('ended before the message stopped');
    if (!this.metered) throw new BedrockStreamError('ended without its metadata (usage) event');
    return ['data: [DONE]\n\n'];
  }

  private head(): Json {
    return { id: this.ids.id, object: 'chat.completion.chunk', created: this.ids.created, model: this.ids.model };
  }

  /** A chunk, preceded by the role's announcement if none came yet. */
  private delta(delta: Json, finish: string | null = null): string[] {
    const out: string[] = [];
    if (!this.announced) {
      this.announced = true;
      out.push(
        this.sse({
          ...this.head(),
          choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
        }),
      );
      if (Object.keys(delta).length === 0 && finish === null) return out;
    }
    out.push(this.sse({ ...this.head(), choices: [{ index: 0, delta, finish_reason: finish }] }));
    return out;
  }

  private sse(chunk: Json): string {
    return `data: ${JSON.stringify(chunk)}\n\n`;
  }
}
