// The wasm side of a pass-through request, without Envoy: each module runs the
// callbacks Envoy makes for one request (context create, request headers, the body
// in chunks, response headers and body, log, done, delete) against a stub host in
// Node's V8, the modules alternating in one loop. Prints, per module and workload,
// the host calls per request (deterministic) and the wasm time per request (the
// median over batches; Node's V8, not Envoy's, so read it as a difference between
// modules, not as Envoy's cost: a host call costs more in Envoy than here).
//
// Usage: node bench/wasm_callbacks.mjs [--requests 2000] [--batches 15] [--json] [--more] A.wasm B.wasm ...
//        node bench/wasm_callbacks.mjs --turn [--requests 500] [--batches 15] A.wasm B.wasm ...
// --more adds two 64 KB non-fusion Chat bodies of other text: English prose whose JSON holds
// \n, \" and \\ escapes, and CJK text escaped as \uXXXX (Python's json.dumps default), where
// the alias scan's escape handling shows.
// --turn runs a forced 3-member fusion turn instead (bench/run.py forced_body: the alias
// on Chat): request headers and body, the three members' answers, the judge's, the final
// answer's (canned answers shaped and sized like the mock's, each delivered through
// proxy_on_http_call_response as Envoy does), the local reply, log, done, delete. It
// prints the wasm time per turn and every host call of one turn by name, the numbers to
// set against bench/cpu_turn.py --own (Envoy's CPU per turn and the filter's share).
// --json prints one JSON document instead (bench/run.py part 1 reads it): per workload
// and module, the host calls of one request and the time per request of every batch
// (batch b of every module ran in the same rotation round: differences are paired).
//
// On a loaded machine, count instructions instead of time (deterministic):
//   valgrind --tool=cachegrind --cache-sim=no node bench/wasm_callbacks.mjs --only W --requests N A.wasm
// runs N requests of workload W (0: GET, 1: 2 KB, 2: 64 KB) and nothing else; the
// difference between N and 0 requests, over N, is the instructions per request.
// The plugin configuration is envoy/demo.yaml's. Workloads: bench/run.py's
// GET /bench/echo and the non-fusion Chat bodies of 2 KB and 64 KB (body in 16 KB chunks).

import { readFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
let requests = 2000;
let batches = 15;
let only = null;
let json = false;
let more = false;
let turn = false;
const modules = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--requests") requests = Number(args[++i]);
  else if (args[i] === "--batches") batches = Number(args[++i]);
  else if (args[i] === "--only") only = Number(args[++i]);
  else if (args[i] === "--json") json = true;
  else if (args[i] === "--more") more = true;
  else if (args[i] === "--turn") turn = true;
  else modules.push(args[i]);
}
if (modules.length === 0) {
  console.error("usage: node bench/wasm_callbacks.mjs [--requests N] [--batches N] A.wasm ...");
  process.exit(2);
}

function pluginConfig() {
  const lines = readFileSync(join(ROOT, "envoy/demo.yaml"), "utf8").split("\n");
  const start = lines.findIndex((l) => l.trim() === "value: |");
  const indent = lines[start + 1].search(/\S/);
  const out = [];
  for (const l of lines.slice(start + 1)) {
    if (l.trim() !== "" && l.search(/\S/) < indent) break;
    out.push(l.slice(indent));
  }
  return Buffer.from(out.join("\n"));
}

// bench/run.py chat_body: model mock-a, no tools, exactly `size` bytes; `words` repeated
// as the user's message, `escape` applied to the JSON text.
function chatBody(size, words = "the quick brown fox jumps over the lazy dog while the model keeps reading ", escape = (t) => t) {
  const body = (filler) => escape(
    JSON.stringify({
      model: "mock-a",
      messages: [
        { role: "system", content: "You are terse." },
        { role: "user", content: filler },
      ],
      max_tokens: 64,
    }).replaceAll('":', '": ').replaceAll(',"', ', "'));
  // The longest prefix of the repeated words whose body fits in `size` bytes.
  const all = words.repeat(Math.floor(size / words.length) + 1);
  let [lo, hi] = [0, all.length];
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (body(all.slice(0, mid)).length <= size) lo = mid;
    else hi = mid - 1;
  }
  return Buffer.from(body(all.slice(0, lo)));
}

const PROSE =
  'She wrote: "Keep the answer short."\nThe model read the whole thread, quoted C:\\logs\\run.txt ' +
  "and the line\t\"exit 0\", then asked what to check next.\nNobody replied for an hour.\n";
const CJK = "模型读取整个对话并给出简短的回答，然后等待下一条消息。请检查日志文件中的错误。";
const asciiEscaped = (t) => t.replace(/[\u0080-\uffff]/g, (c) => "\\u" + c.charCodeAt(0).toString(16).padStart(4, "0"));

const MAP_REQUEST = 0;
const MAP_RESPONSE = 2;
const MAP_CALL_RESPONSE = 6;
const BUF_REQUEST_BODY = 0;
const BUF_CALL_RESPONSE_BODY = 4;
const BUF_RESPONSE_BODY = 1;
const BUF_VM_CONFIG = 6;
const BUF_PLUGIN_CONFIG = 7;
const OK = 0;
const NOT_FOUND = 1;

const SERIALIZED = new WeakMap();

class Instance {
  constructor(path, config) {
    this.name = basename(path);
    this.config = config;
    this.calls = new Map();
    this.counting = false;
    this.headers = [new Map(), null, new Map()];
    this.buffers = new Map();
    const self = this;
    const env = new Proxy(
      {},
      {
        get(_, name) {
          return (...a) => {
            if (self.counting) self.calls.set(name, (self.calls.get(name) || 0) + 1);
            const f = self.host[name];
            return f ? f.apply(self, a) : OK;
          };
        },
      },
    );
    const wasi = {
      environ_sizes_get: (count, size) => (this.u32(count, 0), this.u32(size, 0), OK),
      environ_get: () => OK,
      proc_exit: (code) => {
        throw new Error(`proc_exit(${code})`);
      },
      fd_write: () => OK,
      clock_time_get: () => OK,
      random_get: () => OK,
    };
    const mod = new WebAssembly.Module(readFileSync(path));
    const imports = { env: {}, wasi_snapshot_preview1: {} };
    for (const imp of WebAssembly.Module.imports(mod)) {
      if (imp.module === "env") imports.env[imp.name] = env[imp.name];
      else imports.wasi_snapshot_preview1[imp.name] = wasi[imp.name] || (() => OK);
    }
    this.x = new WebAssembly.Instance(mod, imports).exports;
    this.host = {
      proxy_log: (level, ptr, len) => {
        if (level >= 3 || process.env.DEBUG_TURN) console.error(`${this.name}: ${Buffer.from(this.x.memory.buffer, ptr, len)}`);
        return OK;
      },
      proxy_get_current_time_nanoseconds: (ptr) => {
        new DataView(this.x.memory.buffer).setBigUint64(ptr, BigInt(Date.now()) * 1000000n, true);
        return OK;
      },
      proxy_define_metric: (_k, _p, _l, idPtr) => (this.u32(idPtr, 1), OK),
      proxy_get_buffer_bytes: (kind, start, max, dataPtr, sizePtr) => {
        const b = this.buffers.get(kind);
        if (!b) return NOT_FOUND;
        start >>>= 0;
        return this.give(b.subarray(start, Math.min(b.length, start + (max >>> 0))), dataPtr, sizePtr);
      },
      proxy_get_header_map_value: (map, kPtr, kLen, dataPtr, sizePtr) => {
        const key = Buffer.from(this.x.memory.buffer, kPtr, kLen).toString();
        const v = this.headers[map] && this.headers[map].get(key);
        return v === undefined ? NOT_FOUND : this.give(Buffer.from(v), dataPtr, sizePtr);
      },
      proxy_get_property: () => NOT_FOUND,
      // Pairs as the ABI serializes them: count, (key size, value size) each, then
      // every key and value NUL-terminated. Serialized once per map (the stub's
      // own work stays out of the count, as for the single-value reads).
      proxy_get_header_map_pairs: (map, dataPtr, sizePtr) => {
        const m = this.headers[map];
        if (!m) return NOT_FOUND;
        let bytes = SERIALIZED.get(m);
        if (!bytes) {
          const parts = [...m.entries()].map(([k, v]) => [Buffer.from(k), Buffer.from(v)]);
          const head = Buffer.alloc(4 + parts.length * 8);
          head.writeUInt32LE(parts.length, 0);
          parts.forEach(([k, v], i) => (head.writeUInt32LE(k.length, 4 + i * 8), head.writeUInt32LE(v.length, 8 + i * 8)));
          const nul = Buffer.alloc(1);
          bytes = Buffer.concat([head, ...parts.flatMap(([k, v]) => [k, nul, v, nul])]);
          SERIALIZED.set(m, bytes);
        }
        return this.give(bytes, dataPtr, sizePtr);
      },
      proxy_http_call: (_u, _ul, _h, _hl, _b, bodyLen, _t, _tl, _timeout, tokenPtr) => {
        const token = this.nextToken++;
        this.pending.push(token);
        this.calloutBytes += bodyLen;
        if (process.env.DEBUG_TURN) console.error(`http_call body ${bodyLen}: ${Buffer.from(this.x.memory.buffer, _b, Math.min(bodyLen, 300))}`);
        this.u32(tokenPtr, token);
        return OK;
      },
      proxy_send_local_response: (status) => {
        this.replies.push(status);
        return OK;
      },
    };
    this.nextToken = 1;
    this.pending = [];
    this.replies = [];
    this.calloutBytes = 0;
    this.x._initialize && this.x._initialize();
    this.buffers.set(BUF_VM_CONFIG, Buffer.alloc(0));
    this.buffers.set(BUF_PLUGIN_CONFIG, config);
    this.x.proxy_on_context_create(1, 0);
    if (!this.x.proxy_on_vm_start(1, 0)) throw new Error(`${this.name}: vm start refused`);
    if (!this.x.proxy_on_configure(1, config.length)) throw new Error(`${this.name}: configuration refused`);
    this.next = 2;
  }

  u32(ptr, v) {
    new DataView(this.x.memory.buffer).setUint32(ptr, v, true);
  }

  // Hands bytes to the module as Envoy does: memory from proxy_on_memory_allocate.
  give(bytes, dataPtr, sizePtr) {
    const p = this.x.proxy_on_memory_allocate(bytes.length);
    new Uint8Array(this.x.memory.buffer, p, bytes.length).set(bytes);
    this.u32(dataPtr, p);
    this.u32(sizePtr, bytes.length);
    return OK;
  }

  // One request as Envoy's wasm filter drives it; `chunks`: cumulative body sizes.
  request(w) {
    const x = this.x;
    const id = this.next++;
    this.headers[MAP_REQUEST] = w.headers;
    x.proxy_on_context_create(id, 1);
    x.proxy_on_request_headers(id, w.headers.size, w.body ? 0 : 1);
    if (w.body) {
      for (const [i, end] of w.chunks.entries()) {
        this.buffers.set(BUF_REQUEST_BODY, w.body.subarray(0, end));
        x.proxy_on_request_body(id, end, i === w.chunks.length - 1 ? 1 : 0);
      }
    }
    this.headers[MAP_RESPONSE] = RESPONSE_HEADERS;
    x.proxy_on_response_headers(id, RESPONSE_HEADERS.size, 0);
    this.buffers.set(BUF_RESPONSE_BODY, RESPONSE_BODY);
    x.proxy_on_response_body(id, RESPONSE_BODY.length, 1);
    x.proxy_on_log(id);
    x.proxy_on_done(id);
    x.proxy_on_delete(id);
  }
}

Instance.prototype.turn = function (w) {
  const x = this.x;
  const id = this.next++;
  this.headers[MAP_REQUEST] = w.headers;
  this.replies = [];
  x.proxy_on_context_create(id, 1);
  x.proxy_on_request_headers(id, w.headers.size, 0);
  this.buffers.set(BUF_REQUEST_BODY, w.body);
  x.proxy_on_request_body(id, w.body.length, 1);
  // Members, then the judge, then the outer model: each step's calls are dispatched
  // once the previous step's answers are in.
  for (const answer of [TURN_MEMBER, TURN_JUDGE, TURN_OUTER]) {
    const tokens = this.pending;
    this.pending = [];
    for (const token of tokens) {
      this.headers[MAP_CALL_RESPONSE] = CALL_RESPONSE_HEADERS;
      this.buffers.set(BUF_CALL_RESPONSE_BODY, answer);
      x.proxy_on_http_call_response(1, token, CALL_RESPONSE_HEADERS.size, answer.length, 0);
    }
  }
  if (this.replies.length !== 1 || this.replies[0] !== 200 || this.pending.length !== 0) {
    throw new Error(`${this.name}: the turn did not end in one 200 local reply: ${this.replies}, ${this.pending.length} calls left`);
  }
  this.headers[MAP_RESPONSE] = RESPONSE_HEADERS;
  x.proxy_on_response_headers(id, RESPONSE_HEADERS.size, 0);
  x.proxy_on_log(id);
  x.proxy_on_done(id);
  x.proxy_on_delete(id);
};

// Chat completions as the mock answers them (bench/run.py's turn, a few hundred bytes).
function completion(model, content, prompt, completionTokens) {
  return Buffer.from(JSON.stringify({
    choices: [{ finish_reason: "stop", index: 0, logprobs: null,
      message: { annotations: [], content, refusal: null, role: "assistant" } }],
    created: 1795888998, id: "chatcmpl-mock-1", model, object: "chat.completion",
    service_tier: "default", system_fingerprint: null,
    usage: { completion_tokens: completionTokens,
      completion_tokens_details: { accepted_prediction_tokens: 0, audio_tokens: 0, reasoning_tokens: 0, rejected_prediction_tokens: 0 },
      prompt_tokens: prompt, prompt_tokens_details: { audio_tokens: 0, cached_tokens: 0 },
      total_tokens: prompt + completionTokens },
  }));
}
const TURN_MEMBER = completion("mock-a", "mock-a answers #e0601465: reason result model about [bench t-0] Why is the sky blue?", 7, 14);
const TURN_JUDGE = completion("mock-judge", JSON.stringify({
  consensus: ["The sky is blue because of Rayleigh scattering."],
  contradictions: [], partial_coverage: ["mock-b leaves out sunsets."],
  unique_insights: ["mock-c names the wavelength dependence."], blind_spots: [],
}), 180, 60);
const TURN_OUTER = completion("mock-outer", "mock-outer answers #5a1c09e2: the sky is blue because air scatters short wavelengths more.", 420, 20);
const CALL_RESPONSE_HEADERS = new Map([
  [":status", "200"],
  ["content-type", "application/json"],
]);

const RESPONSE_HEADERS = new Map([
  [":status", "200"],
  ["content-type", "application/json"],
  ["content-length", "200"],
]);
const RESPONSE_BODY = Buffer.alloc(200, 0x61);

function workload(label, method, path, body) {
  const headers = new Map([
    [":method", method],
    [":path", path],
    [":authority", "localhost"],
    [":scheme", "http"],
    ["user-agent", "bench"],
    ["x-request-id", "0f8fad5b-d9cb-469f-a165-70867728950e"],
  ]);
  if (body) {
    headers.set("content-type", "application/json");
    headers.set("content-length", String(body.length));
  }
  const chunks = [];
  if (body) {
    for (let end = Math.min(16384, body.length); ; end = Math.min(end + 16384, body.length)) {
      chunks.push(end);
      if (end === body.length) break;
    }
  }
  return { label, headers, body, chunks };
}

const workloads = [
  workload("GET /bench/echo", "GET", "/bench/echo", null),
  workload("non-fusion Chat, 2 KB", "POST", "/v1/chat/completions", chatBody(2048)),
  workload("non-fusion Chat, 64 KB", "POST", "/v1/chat/completions", chatBody(65536)),
];
if (more) {
  workloads.push(
    workload("non-fusion Chat, 64 KB prose", "POST", "/v1/chat/completions", chatBody(65536, PROSE)),
    workload("non-fusion Chat, 64 KB CJK \\u-escaped", "POST", "/v1/chat/completions", chatBody(65536, CJK, asciiEscaped)),
  );
}

const config = pluginConfig();
const instances = modules.map((m) => new Instance(m, config));
if (turn) {
  const body = Buffer.from(JSON.stringify({ model: "fusion", messages: [
    { role: "user", content: "[bench t-0] Why is the sky blue?" }] }).replaceAll('":', '": ').replaceAll(',"', ', "'));
  const w = workload("forced 3-member fusion turn (Chat)", "POST", "/v1/chat/completions", body);
  if (only !== null) {
    for (const inst of instances) for (let r = 0; r < requests; r++) inst.turn(w);
    process.exit(0);
  }
  for (const inst of instances) {
    for (let i = 0; i < 200; i++) inst.turn(w);
    inst.calls.clear();
    inst.calloutBytes = 0;
    inst.counting = true;
    inst.turn(w);
    inst.counting = false;
    inst.turnCalloutBytes = inst.calloutBytes;
  }
  const times = instances.map(() => []);
  for (let b = 0; b < batches; b++) {
    for (let k = 0; k < instances.length; k++) {
      const i = (b + k) % instances.length;
      const t0 = process.hrtime.bigint();
      for (let r = 0; r < requests; r++) instances[i].turn(w);
      times[i].push(Number(process.hrtime.bigint() - t0) / 1000 / requests);
    }
  }
  const med = (a) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
  const out = instances.map((inst, i) => ({
    module: inst.name,
    us_per_turn: times[i],
    median_us: med(times[i]),
    host_calls: [...inst.calls.values()].reduce((a, c) => a + c, 0),
    calls: Object.fromEntries([...inst.calls.entries()].sort((p, q) => q[1] - p[1]).map(([n, c]) => [n.replace(/^proxy_/, ""), c])),
    callout_body_bytes: inst.turnCalloutBytes,
    memory_pages: inst.x.memory.buffer.byteLength / 65536,
  }));
  if (json) {
    console.log(JSON.stringify({ requests, batches, workload: w.label, modules: out }));
  } else {
    for (const [i, o] of out.entries()) {
      const rel = i === 0 ? "" : `, ${o.median_us - out[0].median_us >= 0 ? "+" : ""}${(o.median_us - out[0].median_us).toFixed(2)} us vs ${out[0].module}`;
      console.log(`${w.label}: ${o.module}: ${o.median_us.toFixed(2)} us per turn${rel} (batches ${times[i].map((t) => t.toFixed(1)).join(" ")}); ` +
        `host calls ${o.host_calls}: ${Object.entries(o.calls).map(([n, c]) => `${n} x${c}`).join(", ")}; callout bodies ${o.callout_body_bytes} bytes`);
    }
  }
  process.exit(0);
}
if (only !== null) {
  for (const inst of instances) for (let r = 0; r < requests; r++) inst.request(workloads[only]);
  process.exit(0);
}
const median = (a) => {
  const s = [...a].sort((p, q) => p - q);
  return s[Math.floor(s.length / 2)];
};

const report = [];
for (const w of workloads) {
  // Host calls of one request (after a warm-up).
  for (const inst of instances) {
    for (let i = 0; i < 200; i++) inst.request(w);
    inst.calls.clear();
    inst.counting = true;
    inst.request(w);
    inst.counting = false;
  }
  const pages = instances.map((inst) => inst.x.memory.buffer.byteLength / 65536);
  const times = instances.map(() => []);
  for (let b = 0; b < batches; b++) {
    // Rotating order: every module takes every position equally often.
    for (let k = 0; k < instances.length; k++) {
      const i = (b + k) % instances.length;
      const t0 = process.hrtime.bigint();
      for (let r = 0; r < requests; r++) instances[i].request(w);
      times[i].push(Number(process.hrtime.bigint() - t0) / 1000 / requests);
    }
  }
  report.push({
    workload: w.label,
    modules: instances.map((inst, i) => ({
      module: inst.name,
      host_calls: [...inst.calls.values()].reduce((a, c) => a + c, 0),
      calls: Object.fromEntries([...inst.calls.entries()].map(([n, c]) => [n.replace(/^proxy_/, ""), c])),
      us_per_request: times[i],
      memory_pages: pages[i],
      memory_grown_pages: inst.x.memory.buffer.byteLength / 65536 - pages[i],
    })),
  });
  if (json) continue;
  for (const [i, inst] of instances.entries()) {
    const calls = [...inst.calls.entries()].map(([n, c]) => `${n.replace(/^proxy_/, "")} x${c}`).join(", ");
    const total = [...inst.calls.values()].reduce((a, c) => a + c, 0);
    const rel = i === 0 ? "" : `, ${(median(times[i]) - median(times[0])) >= 0 ? "+" : ""}${(median(times[i]) - median(times[0])).toFixed(2)} us vs ${instances[0].name}`;
    const grown = inst.x.memory.buffer.byteLength / 65536 - pages[i];
    console.log(`${w.label}: ${inst.name}: ${median(times[i]).toFixed(2)} us per request${rel}; ` +
      `memory ${pages[i]} pages, +${grown} over ${batches * requests} requests; host calls ${total}${total ? ` (${calls})` : ""}`);
  }
}
if (json) console.log(JSON.stringify({ requests, batches, workloads: report }));
