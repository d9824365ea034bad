/**
 * The chat requests the pre-count is measured on (bench `proxy.precount_error_ratio.*`): real text
 * from this repository (the paragraphs of README.md and docs/*.md, in file order, and stretches of
 * the proxy's own source) and a few snippets in other scripts, at four message shapes: one user
 * message, a system prompt and a user message, a conversation of six turns and a question, and a
 * tool round (two tool definitions, a call, its result). The same rule picks the same requests
 * from the same files; the model is left out, for each family to set.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

type Json = Record<string, unknown>;

const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Text in scripts other than Latin, and code: where bytes per token differ most from English. */
const SNIPPETS = [
  'レート制限は、テナントごとに一日のトークン数と一分あたりのリクエスト数を数えます。上限を超えたリクエストは 429 で拒否され、Retry-After ヘッダーが次に試せる時刻を示します。',
  '每个租户的令牌预算按天计算，每个用户的请求按分钟计算。超出限制的请求会收到 429 响应，并附带 Retry-After 头，告诉客户端何时可以重试。',
  '토큰 버킷은 일정한 속도로 다시 채워지며, 버킷이 비어 있으면 요청은 거부됩니다. 예약된 토큰은 응답이 끝난 뒤 실제 사용량으로 정산됩니다.',
  'Ограничитель резервирует верхнюю границу входных токенов до вызова модели и возвращает разницу после того, ' +
    'как провайдер сообщил фактическое использование.',
  'يحجز المحدِّد الحد الأعلى لرموز الإدخال قبل استدعاء النموذج، ثم يسوّي الحساب بعد أن يبلغ المزوّد عن الاستخدام الفعلي.',
  'सीमक मॉडल को बुलाने से पहले इनपुट टोकन की ऊपरी सीमा आरक्षित करता है और प्रदाता द्वारा वास्तविक उपयोग बताने के बाद हिसाब बराबर करता है।',
  'Der Begrenzer reserviert vor dem Aufruf eine Obergrenze für Eingabe-Tokens (Überschreitungen führen zu 429) ' +
    'und verrechnet danach, was tatsächlich verbraucht wurde. Schöne Grüße aus Köln! 🎉🚀✨',
  'Ο περιοριστής δεσμεύει ένα άνω όριο για τα διακριτικά εισόδου πριν καλέσει το μοντέλο και τακτοποιεί τον λογαριασμό μετά.',
  JSON.stringify({ plans: { team: { tenant: [{ tokensPerDay: 1_000_000 }], user: [{ requestsPerMinute: 60 }] } } }),
];

/**
 * Paragraphs of 120 characters or more, README.md first, then docs/*.md by name but benchmarks.md
 * (which records these figures: writing them down would change what they were measured on).
 */
function paragraphs(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'))
    .filter((f) => f.endsWith('.md') && f !== 'benchmarks.md')
    .sort()
    .map((f) => join(ROOT, 'docs', f));
  return [join(ROOT, 'README.md'), ...docs]
    .flatMap((file) => readFileSync(file, 'utf8').split(/\n\s*\n/))
    .map((p) => p.trim())
    .filter((p) => p.length >= 120);
}

/** The proxy's input bound, as code: 40 lines at a time. */
function sourceStretches(): string[] {
  const lines = readFileSync(join(ROOT, 'lambda', 'proxy', 'input-bound.ts'), 'utf8').split('\n');
  return Array.from({ length: Math.ceil(lines.length / 40) }, (_, i) => lines.slice(i * 40, i * 40 + 40).join('\n'));
}

const user = (content: string) => ({ role: 'user', content });
const assistant = (content: string) => ({ role: 'assistant', content });
const tool = (name: string, description: string) => ({
  type: 'function',
  function: {
    name,
    description,
    parameters: {
      type: 'object',
      properties: { query: { type: 'string', description: 'What to look up' }, limit: { type: 'integer' } },
      required: ['query'],
    },
  },
});

export type Shape = 'user' | 'system_user' | 'conversation' | 'tools';

/** `perShape` requests of each shape, drawn in turn from the paragraphs, the source and the snippets. */
export function precountCorpus(perShape: number): { shape: Shape; body: Json }[] {
  const texts = [...SNIPPETS, ...sourceStretches(), ...paragraphs()];
  let next = 0;
  const take = () => texts[next++ % texts.length]!;
  const requests: { shape: Shape; body: Json }[] = [];
  for (let i = 0; i < perShape; i++) {
    requests.push({ shape: 'user', body: { messages: [user(take())] } });
    requests.push({
      shape: 'system_user',
      body: { messages: [{ role: 'system', content: take() }, user(take())] },
    });
    requests.push({
      shape: 'conversation',
      body: {
        messages: [
          { role: 'system', content: take() },
          user(take()),
          assistant(take()),
          user(take()),
          assistant(take()),
          user(take()),
          assistant(take()),
          user(take()),
        ],
      },
    });
    requests.push({
      shape: 'tools',
      body: {
        messages: [
          user(take()),
          {
            role: 'assistant',
            content: null,
            tool_calls: [
              {
                id: `call_${i}`,
                type: 'function',
                function: { name: 'search_docs', arguments: JSON.stringify({ query: take().slice(0, 200), limit: 3 }) },
              },
            ],
          },
          { role: 'tool', tool_call_id: `call_${i}`, content: take() },
        ],
        tools: [tool('search_docs', take().slice(0, 400)), tool('read_page', take().slice(0, 400))],
      },
    });
  }
  return requests;
}
