// fusion-wasm playground: calls the gateway like any client (fetch, streamed or not) and
// shows the panel's answers, the judge's analysis, the final answer and the run's timeline.
//
// Where the deliberation comes from:
// - the `fusion` report, when it carries `analysis` (an object) and `responses` (an
//   array): the filter adds them for the request header `x-fusion-include`;
// - otherwise the fusion tool result the response carries: Responses' `fusion_call`
//   output item, Messages' `fusion_tool_result` block (Chat has none).
"use strict";

const KEYS = ["consensus", "contradictions", "partial_coverage", "unique_insights", "blind_spots"];
const PATHS = { chat: "/v1/chat/completions", responses: "/v1/responses", messages: "/v1/messages" };
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- the request

function requestBody(api, prompt, panel, stream) {
  const tool = { type: "fusion", panel: panel.map((model) => ({ model })), judge: { model: "mock-judge" } };
  const base = { model: "mock-outer", stream, tools: [tool] };
  if (api === "chat") {
    return Object.assign(base, {
      messages: [{ role: "user", content: prompt }],
      tool_choice: { type: "function", function: { name: "fusion" } },
    }, stream ? { stream_options: { include_usage: true } } : {});
  }
  if (api === "responses") {
    return Object.assign(base, { input: prompt, tool_choice: { type: "function", name: "fusion" } });
  }
  return Object.assign(base, {
    max_tokens: 1024,
    messages: [{ role: "user", content: prompt }],
    tool_choice: { type: "tool", name: "fusion" },
  });
}

// ---------------------------------------------------------------- reading the answer

/** A tool result or `fusion_call` output: a JSON string, an object, or text blocks. */
function parseToolResult(value) {
  if (Array.isArray(value)) value = value.map((p) => (p && p.text) || "").join("");
  if (typeof value === "string") {
    try { return JSON.parse(value); } catch (_) { return null; }
  }
  return value && typeof value === "object" ? value : null;
}

/** Everything a non-streamed body (or a finished stream's last object) tells. */
function readBody(api, body, view) {
  if (api === "chat") {
    const msg = (body.choices && body.choices[0] && body.choices[0].message) || {};
    view.setFinal(msg.content || "");
  } else if (api === "responses") {
    for (const item of body.output || []) {
      if (item.type === "fusion_call") view.toolResult(parseToolResult(item.output));
    }
    view.setFinal((body.output || []).filter((i) => i.type === "message")
      .flatMap((i) => i.content || []).map((p) => p.text || "").join(""));
  } else {
    for (const block of body.content || []) {
      if (block.type === "fusion_tool_result") view.toolResult(parseToolResult(block.content));
    }
    view.setFinal((body.content || []).filter((b) => b.type === "text").map((b) => b.text).join(""));
  }
  view.setModel(body.model);
  if (body.fusion) view.report(body.fusion);
}

/** One SSE event of a streamed answer. */
function readEvent(api, name, data, view) {
  if (api === "chat") {
    const choice = data.choices && data.choices[0];
    if (choice && choice.delta && choice.delta.content) view.appendFinal(choice.delta.content);
    if (data.model) view.setModel(data.model);
    if (data.fusion) view.report(data.fusion);
    return;
  }
  if (api === "responses") {
    const type = data.type || name;
    if (type === "response.output_text.delta") view.appendFinal(data.delta || "");
    if (type === "response.output_item.done" && data.item && data.item.type === "fusion_call") {
      view.toolResult(parseToolResult(data.item.output));
    }
    if ((type === "response.completed" || type === "response.incomplete" || type === "response.failed") && data.response) {
      view.setModel(data.response.model);
      for (const item of data.response.output || []) {
        if (item.type === "fusion_call") view.toolResult(parseToolResult(item.output));
      }
      if (data.response.fusion) view.report(data.response.fusion);
    }
    if (type === "error") view.error(JSON.stringify(data));
    return;
  }
  const type = data.type || name;
  if (type === "message_start" && data.message) view.setModel(data.message.model);
  if (type === "content_block_start" && data.content_block && data.content_block.type === "fusion_tool_result") {
    view.toolResult(parseToolResult(data.content_block.content));
  }
  if (type === "content_block_delta" && data.delta && data.delta.type === "text_delta") view.appendFinal(data.delta.text);
  if (type === "message_delta" && data.fusion) view.report(data.fusion);
  if (type === "error") view.error(JSON.stringify(data.error || data));
}

/** Reads a fetch Response as server-sent events. */
async function readStream(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    const blocks = buffer.split(/\r?\n\r?\n/);
    buffer = done ? "" : blocks.pop();
    for (const block of blocks) {
      let name = "";
      const data = [];
      for (const line of block.split(/\r?\n/)) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      const text = data.join("\n");
      if (!text || text === "[DONE]") continue;
      try { onEvent(name, JSON.parse(text)); } catch (e) { console.warn("unreadable event", text, e); }
    }
    if (done) return;
  }
}

// ---------------------------------------------------------------- the view

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

class View {
  constructor(panel) {
    this.cards = new Map();
    this.finalText = "";
    $("answers").replaceChildren();
    $("analysis").replaceChildren();
    $("final").textContent = "";
    $("final-model").textContent = "";
    $("timeline").replaceChildren();
    $("totals").textContent = "";
    for (const model of panel) this.card(model, "waiting", "waiting for the panel…");
  }

  card(model, state, text) {
    let card = this.cards.get(model);
    if (!card) {
      card = el("article", { class: "card" }, el("h3", {}, model), el("p"));
      card.dataset.model = model;
      this.cards.set(model, card);
      $("answers").append(card);
    }
    card.className = "card " + state;
    card.querySelector("p").textContent = text;
  }

  answers(responses, failed) {
    for (const r of responses || []) this.card(r.model, "answered", r.content || r.text || "");
    for (const f of failed || []) this.card(f.model, "failed", "failed: " + (f.reason || f.failure_reason || "?"));
  }

  analysis(a) {
    if (!a || typeof a !== "object" || $("analysis").dataset.filled) return;
    $("analysis").dataset.filled = "1";
    for (const key of KEYS) {
      const items = Array.isArray(a[key]) ? a[key] : [];
      const list = el("ul", { "data-key": key });
      for (const item of items) list.append(el("li", {}, String(item)));
      if (!items.length) list.append(el("li", { class: "muted" }, "(none)"));
      $("analysis").append(el("div", { class: "list" }, el("h3", {}, key.replace(/_/g, " ")), list));
    }
  }

  toolResult(result) {
    if (!result) return;
    this.answers(result.responses, result.failed_models);
    if (result.status === "error") this.status("the panel failed: " + result.failure_reason, true);
    this.analysis(result.analysis);
  }

  report(fusion) {
    // The tool result the answering model got (`fusion.tool_result`): failed members and,
    // without x-fusion-include, the answers and the analysis too.
    if (fusion.tool_result) this.toolResult(parseToolResult(fusion.tool_result));
    if (Array.isArray(fusion.responses)) this.answers(fusion.responses, []);
    for (const m of fusion.panel || []) {
      const card = this.cards.get(m.model);
      if (card && card.classList.contains("answered")) continue;
      if (m.status !== "ok") this.card(m.model, "failed", m.status + ": " + (m.failure_reason || ""));
      // Chat carries no tool result: without x-fusion-include support the text is not here.
      else this.card(m.model, "untold", `answered in ${m.latency_ms} ms; this API's response does not carry the text`);
    }
    if (fusion.analysis && typeof fusion.analysis === "object") this.analysis(fusion.analysis);
    else if (fusion.analysis === true && !$("analysis").dataset.filled) {
      $("analysis").replaceChildren(el("p", { class: "muted" },
        "The judge's analysis reached the outer model, but this API's response does not carry it."));
    }
    drawTimeline(fusion);
    const cost = fusion.cost == null ? "unpriced (" + (fusion.unpriced_models || []).join(", ") + ")" : fusion.cost.toFixed(6);
    $("totals").textContent = `mode ${fusion.mode}, ${fusion.wall_ms} ms, ` +
      `${(fusion.usage || {}).total_tokens} tokens, cost ${cost}, run ${fusion.run_id}`;
  }

  setModel(model) { if (model) $("final-model").textContent = "(" + model + ")"; }
  setFinal(text) { this.finalText = text; $("final").textContent = text; }
  appendFinal(text) { this.setFinal(this.finalText + text); }
  status(text, bad) { $("status").textContent = text; $("status").className = bad ? "error" : ""; }
  error(text) { this.status(text, true); }
}

// ---------------------------------------------------------------- the timeline

/** Each call of the run with its start: the report's `start_ms` when it has one,
 *  otherwise derived from the order of a run (outer decision in auto mode, panel in
 *  parallel, judge after the panel wait, final rounds after the judge). */
function timelineCalls(f) {
  const rows = [];
  const finals = f.final || [];
  let t = 0;
  let rest = finals;
  if (f.mode === "auto" && finals.length > 1) {
    rows.push({ role: "outer", call: finals[0], start: 0 });
    t = finals[0].latency_ms || 0;
    rest = finals.slice(1);
  }
  const panel = f.panel || [];
  for (const m of panel) rows.push({ role: "panel", call: m, start: t });
  const wait = f.panel_wait_ms != null ? f.panel_wait_ms : Math.max(0, ...panel.map((m) => m.latency_ms || 0));
  t += panel.length ? wait : 0;
  if (f.judge) {
    rows.push({ role: "judge", call: f.judge, start: t });
    t += f.judge.latency_ms || 0;
  }
  for (const c of rest) {
    rows.push({ role: f.mode === "merge" ? "synthesis" : "outer", call: c, start: t });
    t += c.latency_ms || 0;
  }
  for (const r of rows) if (typeof r.call.start_ms === "number") r.start = r.call.start_ms;
  return rows;
}

function drawTimeline(f) {
  const rows = timelineCalls(f);
  const NS = "http://www.w3.org/2000/svg";
  const W = 1000, left = 170, right = 250, rowH = 26, top = 24;
  const end = Math.max(1, f.wall_ms || 0, ...rows.map((r) => r.start + (r.call.latency_ms || 0)));
  const scale = (W - left - right) / end;
  const H = top + rows.length * rowH + 10;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "timeline of the run's calls");
  const add = (tag, attrs, text) => {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text != null) n.textContent = text;
    svg.append(n);
    return n;
  };
  for (let i = 0; i <= 4; i++) {
    const x = left + ((W - left - right) * i) / 4;
    add("line", { x1: x, x2: x, y1: top - 6, y2: H - 6, class: "axis" });
    add("text", { x, y: top - 10, "text-anchor": "middle" }, Math.round((end * i) / 4) + " ms");
  }
  const colors = { panel: "var(--ok)", judge: "var(--judge)", outer: "var(--outer)", synthesis: "var(--outer)" };
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const c = r.call;
    const u = c.usage || {};
    add("text", { x: 8, y: y + 15 }, `${r.role}: ${c.model}`);
    add("rect", {
      x: left + r.start * scale, y: y + 3, height: rowH - 8, rx: 3,
      width: Math.max(2, (c.latency_ms || 0) * scale),
      fill: c.status === "ok" ? colors[r.role] : "var(--bad)",
      "data-model": c.model,
    });
    const cost = c.cost == null ? "unpriced" : "$" + Number(c.cost).toFixed(6);
    const detail = c.status === "ok"
      ? `${c.latency_ms} ms · ${u.input_tokens || 0}+${u.output_tokens || 0} tok · ${cost}`
      : `${c.status} ${c.failure_reason || ""} · ${c.latency_ms} ms`;
    add("text", { x: W - right + 8, y: y + 15 }, detail);
  });
  $("timeline").replaceChildren(svg);
}

// ---------------------------------------------------------------- running a turn

async function run(event) {
  event.preventDefault();
  const api = $("api").value;
  const prompt = $("prompt").value.trim();
  const panel = [...document.querySelectorAll("#panel input:checked")].map((i) => i.value);
  const stream = $("stream").checked;
  if (!prompt || !panel.length) return;
  document.body.dataset.state = "running";
  $("run").disabled = true;
  const view = new View(panel);
  const started = performance.now();
  view.status(`running: ${panel.length} panel models, judge mock-judge, outer model mock-outer…`);
  const headers = { "content-type": "application/json", "x-fusion-include": "analysis,responses" };
  if (api === "messages") headers["anthropic-version"] = "2023-06-01";
  try {
    const res = await fetch(PATHS[api], {
      method: "POST", headers, body: JSON.stringify(requestBody(api, prompt, panel, stream)),
    });
    const type = res.headers.get("content-type") || "";
    if (!res.ok || !type.includes("event-stream")) {
      const body = await res.json().catch(() => ({}));
      if (!res.ok) {
        const err = body.error || {};
        view.error(`HTTP ${res.status}: ${err.message || JSON.stringify(body)}`);
        if (body.fusion) view.report(body.fusion);
        return;
      }
      readBody(api, body, view);
    } else {
      await readStream(res, (name, data) => readEvent(api, name, data, view));
    }
    const run = res.headers.get("x-fusion-run-id");
    view.status(`done in ${Math.round(performance.now() - started)} ms` +
      (run ? ` · x-fusion-run-id ${run} · x-fusion-panel ${res.headers.get("x-fusion-panel")}` : ""));
  } catch (e) {
    view.error(String(e));
  } finally {
    $("run").disabled = false;
    document.body.dataset.state = "done";
  }
}

$("ask").addEventListener("submit", run);
