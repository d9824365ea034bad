/** A Messages request as Anthropic's docs and SDKs write one, shared by the dialect's and the Anthropic upstream's tests. */
export const MODEL = 'claude-sonnet-4-5';

/** System blocks, a tool round, images, every translated option. */
export const RECORDED_REQUEST: Readonly<Record<string, unknown>> = {
  model: MODEL,
  max_tokens: 1024,
  system: [{ type: 'text', text: 'You are terse.', cache_control: { type: 'ephemeral' } }],
  messages: [
    {
      role: 'user',
      content: [
        { type: 'text', text: 'Weather in Paris? And what is this?' },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBORw0KGgo=' } },
        { type: 'image', source: { type: 'url', url: 'https://example.com/cat.jpg' } },
      ],
    },
    {
      role: 'assistant',
      content: [
        { type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'toolu_01', name: 'get_weather', input: { city: 'Paris' } },
      ],
    },
    {
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 'toolu_01', content: [{ type: 'text', text: '18C' }] },
        { type: 'text', text: 'Thanks. In Kelvin?' },
      ],
    },
  ],
  tools: [
    {
      name: 'get_weather',
      description: 'Weather for a city',
      input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      cache_control: { type: 'ephemeral' },
    },
  ],
  tool_choice: { type: 'any', disable_parallel_tool_use: true },
  stop_sequences: ['END'],
  temperature: 0.2,
  top_p: 0.9,
  metadata: { user_id: 'u-42' },
  stream: true,
};
