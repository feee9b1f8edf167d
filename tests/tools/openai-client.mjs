// The official `openai` npm client against the grid's OpenAI-compatible /v1, driven by
// tests/Coordinator.Tests/OpenAi/OpenAiNodeClientTests.cs (which plays the worker meanwhile).
//
//   node openai-client.mjs BASE_URL API_KEY MODEL
//
// Prints one JSON line per scenario, in this order: models, sync, stream, bad_key, unknown_model.
import OpenAI from 'openai';

const [baseURL, apiKey, model] = process.argv.slice(2);
if (!baseURL || !apiKey || !model) {
  console.error('usage: node openai-client.mjs BASE_URL API_KEY MODEL');
  process.exit(2);
}
// No retries: each request is a grid job, and a test wants to see the first answer.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
const print = (scenario, value) => console.log(JSON.stringify({ scenario, ...value }));
const errorOf = async (request) => {
  try {
    await request;
    return { error: null };
  } catch (error) {
    return { error: error.constructor.name, status: error.status ?? null, code: error.code ?? null, type: error.type ?? null };
  }
};

const models = await client.models.list();
print('models', { object: 'list', ids: models.data.map((m) => m.id) });

const sync = await client.chat.completions.create({
  model,
  messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'sync' }],
  max_tokens: 20,
  temperature: 0.2,
});
print('sync', { object: sync.object, content: sync.choices[0].message.content, finish: sync.choices[0].finish_reason, usage: sync.usage });

const stream = await client.chat.completions.create({
  model,
  messages: [{ role: 'user', content: 'stream' }],
  stream: true,
  stream_options: { include_usage: true },
});
const deltas = [];
let role = null;
let finish = null;
let usage = null;
for await (const chunk of stream) {
  const choice = chunk.choices[0];
  if (choice?.delta?.role) role = choice.delta.role;
  if (choice?.delta?.content) deltas.push(choice.delta.content);
  if (choice?.finish_reason) finish = choice.finish_reason;
  if (chunk.usage) usage = chunk.usage;
}
print('stream', { role, deltas, finish, usage });

const stranger = new OpenAI({ baseURL, apiKey: 'vk_live_not_a_key', maxRetries: 0 });
print('bad_key', await errorOf(stranger.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }] })));
print('unknown_model', await errorOf(client.chat.completions.create({ model: `${model}-unknown:1b`, messages: [{ role: 'user', content: 'x' }] })));
