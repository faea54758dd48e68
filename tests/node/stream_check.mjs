// Drive a live foxmock with the official `openai` Node SDK and print a JSON summary on stdout.
//
//   node stream_check.mjs BASE_URL [MODEL]
//
// Run it from a directory whose node_modules holds `openai` (tests/test_node_sdk.py copies it
// next to its npm install). The summary carries the raw bodies and chunks the SDK received, so
// the Python side can validate them against OpenAI's official schemas.
import OpenAI from "openai";

const [baseURL, model = "foxora-1"] = process.argv.slice(2);
if (!baseURL) {
  console.error("usage: node stream_check.mjs BASE_URL [MODEL]");
  process.exit(2);
}

const client = new OpenAI({ baseURL, apiKey: "test-key", maxRetries: 0, timeout: 20_000 });

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city.",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, unit: { enum: ["celsius", "fahrenheit"] } },
      required: ["city"],
    },
  },
};

// 1. A plain request.
const completion = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "node plain" }],
});

// 2. A streamed request with usage.
const chunks = [];
const deltas = [];
let usage = null;
let finishReason = null;
const stream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "node stream" }],
  stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of stream) {
  chunks.push(chunk);
  if (chunk.usage) usage = chunk.usage;
  for (const choice of chunk.choices) {
    if (choice.delta.content) deltas.push(choice.delta.content);
    if (choice.finish_reason) finishReason = choice.finish_reason;
  }
}

// 3. A streamed tool call, reassembled by hand from its deltas.
const toolChunks = [];
const calls = [];
let toolFinishReason = null;
const toolStream = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "node weather in Tromsø" }],
  tools: [weatherTool],
  stream: true,
});
for await (const chunk of toolStream) {
  toolChunks.push(chunk);
  for (const choice of chunk.choices) {
    for (const delta of choice.delta.tool_calls ?? []) {
      calls[delta.index] ??= { id: null, name: null, arguments: "" };
      const call = calls[delta.index];
      if (delta.id) call.id = delta.id;
      if (delta.function?.name) call.name = delta.function.name;
      call.arguments += delta.function?.arguments ?? "";
    }
    if (choice.finish_reason) toolFinishReason = choice.finish_reason;
  }
}

// 4. The same tool call through the SDK's stream helper (under `beta` before openai 5).
const completions = client.chat.completions.stream
  ? client.chat.completions
  : client.beta.chat.completions;
const helper = completions.stream({
  model,
  messages: [{ role: "user", content: "node weather in Tromsø" }],
  tools: [weatherTool],
});
const helperChunks = [];
helper.on("chunk", (chunk) => helperChunks.push(chunk));
const final = await helper.finalChatCompletion();

const summary = {
  node_version: process.version,
  completion,
  streamed: { content: deltas.join(""), deltas, usage, finish_reason: finishReason, chunks },
  tool_stream: { calls, finish_reason: toolFinishReason, chunks: toolChunks },
  helper: {
    finish_reason: final.choices[0].finish_reason,
    tool_calls: final.choices[0].message.tool_calls.map((c) => ({
      id: c.id,
      name: c.function.name,
      arguments: c.function.arguments,
    })),
    chunks: helperChunks,
  },
};
process.stdout.write(JSON.stringify(summary) + "\n");
