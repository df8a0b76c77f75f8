// Drives the Vercel AI SDK (unchanged, from npm) against the gateway, as a user would.
//
//   node ai_sdk.mjs <responses|chat|anthropic> <generate|stream> <gateway URL> [turns]
//
// Each turn asks a question with model "fusion"; a second turn continues the
// conversation with the SDK's own response messages (on Responses these are
// `item_reference`s by default). Prints {"turns": [{text, finishReason,
// warnings}]} on stdout; on any error prints {"error": ...} and exits 1.
import { generateText, streamText } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createAnthropic } from '@ai-sdk/anthropic';

const [provider, mode, gateway, turnsArg] = process.argv.slice(2);
const turns = Number(turnsArg || 1);
const QUESTIONS = ['Why is the sky blue?', 'And why are sunsets red?'];

function model() {
  if (provider === 'anthropic') {
    return createAnthropic({ baseURL: `${gateway}/v1`, apiKey: 'sk-ant-dummy' })('fusion');
  }
  const openai = createOpenAI({ baseURL: `${gateway}/v1`, apiKey: 'sk-dummy' });
  if (provider === 'chat') return openai.chat('fusion');
  if (provider === 'responses') return openai.responses('fusion');
  throw new Error(`unknown provider ${provider}`);
}

async function generate(messages) {
  const r = await generateText({ model: model(), messages, maxOutputTokens: 1024, maxRetries: 0 });
  return {
    turn: { text: r.text, finishReason: r.finishReason, warnings: r.warnings ?? [] },
    messages: r.response.messages,
  };
}

async function stream(messages) {
  const errors = [];
  const r = streamText({
    model: model(),
    messages,
    maxOutputTokens: 1024, // the SDK warns when it must guess a limit for an unknown model
    maxRetries: 0,
    onError: ({ error }) => errors.push(error),
  });
  let text = '';
  for await (const part of r.fullStream) {
    if (part.type === 'text-delta') text += part.text ?? part.delta ?? '';
    if (part.type === 'error') errors.push(part.error);
  }
  if (errors.length > 0) throw errors[0];
  const response = await r.response;
  return {
    turn: { text, finishReason: await r.finishReason, warnings: (await r.warnings) ?? [] },
    messages: response.messages,
  };
}

const out = { turns: [] };
const messages = [];
try {
  for (let i = 0; i < turns; i++) {
    messages.push({ role: 'user', content: QUESTIONS[i % QUESTIONS.length] });
    const { turn, messages: answer } = await (mode === 'stream' ? stream(messages) : generate(messages));
    out.turns.push(turn);
    messages.push(...answer);
  }
} catch (e) {
  out.error = `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
  if (e?.cause) out.cause = String(e.cause?.message ?? e.cause);
  if (e?.responseBody) out.responseBody = String(e.responseBody).slice(0, 2000);
  console.log(JSON.stringify(out));
  process.exit(1);
}
console.log(JSON.stringify(out));
