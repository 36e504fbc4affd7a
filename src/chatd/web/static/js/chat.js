// The chat view: settings -> a streaming request; answers rendered as their chunks arrive.

import { stream } from "./api.js";
import { el, logprobTokens, markdown, pretty, toolCallCard } from "./render.js";

const $ = (id) => document.getElementById(id);

/** `key=value, key=value` -> {key: value}. */
export function parsePairs(text, what) {
  const pairs = {};
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const at = part.indexOf("=");
    if (at < 1) throw new Error(`${what}: write key=value pairs separated by commas`);
    pairs[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  return pairs;
}

function parseJSON(text, what) {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what} is not valid JSON: ${error.message}`);
  }
}

function number(id) {
  const raw = $(id).value.trim();
  return raw === "" ? undefined : Number(raw);
}

/** The request body from the settings panel; throws Error with a message for the user. */
function buildRequest(model, messages) {
  const body = { model, messages, stream: true, stream_options: { include_usage: true } };
  const system = $("system").value.trim();
  if (system) body.messages = [{ role: "system", content: system }, ...messages];
  const fields = { temperature: "temperature", max_completion_tokens: "max-tokens", seed: "seed" };
  for (const [field, id] of Object.entries(fields)) {
    const value = number(id);
    if (value !== undefined) body[field] = value;
  }
  const n = number("n");
  if (n !== undefined && n !== 1) body.n = n;
  const format = $("format").value;
  if (format === "json_object") body.response_format = { type: "json_object" };
  if (format === "json_schema") {
    const schema = parseJSON($("schema").value, "The JSON schema");
    const wrapped = schema && typeof schema.schema === "object" && schema.name;
    body.response_format = {
      type: "json_schema",
      json_schema: wrapped ? schema : { name: "answer", schema, strict: true },
    };
  }
  const tools = $("tools").value.trim();
  if (tools) body.tools = parseJSON(tools, "Tools");
  if ($("logprobs").checked) {
    body.logprobs = true;
    const top = number("top-logprobs");
    if (top) body.top_logprobs = top;
  }
  if ($("store").checked) {
    body.store = true;
    const metadata = parsePairs($("metadata").value, "Metadata");
    if (Object.keys(metadata).length) body.metadata = metadata;
  }
  const extra = $("extra").value.trim();
  if (extra) Object.assign(body, parseJSON(extra, "Extra body"));
  return body;
}

/** One choice as it streams: text, refusal, tool calls, logprobs, finish reason. */
class ChoiceView {
  constructor(index, options) {
    this.index = index;
    this.options = options;
    this.content = "";
    this.refusal = "";
    this.toolCalls = [];
    this.logprobs = [];
    this.finish = null;
    this.badge = el("span.finish");
    this.body = el("div.choice-content");
    this.calls = el("div.tool-calls");
    this.node = el("div.choice", { "data-index": index },
      el("div.choice-head", {}, el("span", { text: `choice ${index}` }), this.badge),
      this.body, this.calls);
  }

  add(choice) {
    const delta = choice.delta || {};
    if (delta.content) this.content += delta.content;
    if (delta.refusal) this.refusal += delta.refusal;
    for (const part of delta.tool_calls || []) {
      const call = (this.toolCalls[part.index] ||= { id: "", type: "function", function: { name: "", arguments: "" } });
      if (part.id) call.id = part.id;
      if (part.function?.name) call.function.name += part.function.name;
      if (part.function?.arguments) call.function.arguments += part.function.arguments;
    }
    if (choice.logprobs?.content) this.logprobs.push(...choice.logprobs.content);
    if (choice.finish_reason) this.finish = choice.finish_reason;
  }

  render(final) {
    const { json, logprobs } = this.options;
    if (logprobs && this.logprobs.length) {
      this.body.replaceChildren(logprobTokens(this.logprobs));
    } else if (json) {
      const text = final ? pretty(this.content) : this.content;
      this.body.replaceChildren(el("pre.json", {}, el("code", { text })));
    } else {
      this.body.innerHTML = markdown(this.content);
    }
    if (this.refusal) this.body.append(el("div.refusal", { text: this.refusal }));
    this.calls.replaceChildren(...this.toolCalls.filter(Boolean).map(toolCallCard));
    this.badge.textContent = this.finish ? `finish: ${this.finish}` : "";
    this.node.classList.toggle("streaming", !final);
  }
}

/** An answer card: n choices, then the figures of the whole request. */
class AnswerView {
  constructor(n, options, stored) {
    this.options = options;
    this.stored = stored;
    this.choices = [];
    this.grid = el("div.choices", { class: n > 1 ? "choices multi" : "choices" });
    this.stats = el("div.stats");
    this.status = el("div.answer-status");
    this.node = el("div.answer", {}, el("div.role", { text: "assistant" }), this.grid, this.status, this.stats);
    for (let i = 0; i < n; i++) this.choice(i);
    this.pending = false;
    this.done = false;
  }

  choice(index) {
    while (this.choices.length <= index) {
      const view = new ChoiceView(this.choices.length, this.options);
      this.choices.push(view);
      this.grid.append(view.node);
    }
    return this.choices[index];
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      if (this.done) return; // finish() has drawn the final state
      for (const choice of this.choices) choice.render(false);
    });
  }

  finish({ usage, started, first, ended, id, error, stopped }) {
    this.done = true;
    for (const choice of this.choices) choice.render(true);
    this.node.classList.add("done");
    if (stopped) this.status.append(el("div.stopped", { text: "Stopped: the request was cancelled." }));
    if (error) this.status.append(el("div.error", { text: error }));
    if (id && this.stored && !error && !stopped) {
      this.status.append(el("a.stored-link", { href: `#stored/${id}`, text: `stored as ${id}` }));
    }
    const facts = [];
    if (first !== null) facts.push(["time to first token", `${Math.round(first - started)} ms`]);
    if (usage) {
      const seconds = (ended - (first ?? started)) / 1000;
      if (usage.completion_tokens > 1 && seconds > 0) {
        facts.push(["tokens/s", (usage.completion_tokens / seconds).toFixed(1)]);
      }
      facts.push(["prompt", usage.prompt_tokens], ["completion", usage.completion_tokens],
        ["total", usage.total_tokens]);
      facts.push(["cached", usage.prompt_tokens_details?.cached_tokens ?? 0]);
    }
    const reasons = [...new Set(this.choices.map((c) => c.finish).filter(Boolean))];
    if (reasons.length) facts.push(["finish", reasons.join(", ")]);
    this.stats.replaceChildren(...facts.map(([name, value]) =>
      el("span.fact", { "data-fact": name }, el("span.fact-name", { text: name }), el("b", { text: String(value) }))));
  }
}

export function initChat({ model, notify }) {
  const messages = $("messages");
  let history = [];
  let controller = null;

  function scrollDown() {
    messages.scrollTop = messages.scrollHeight;
  }

  function setBusy(busy) {
    $("send").disabled = busy;
    $("stop").disabled = !busy;
  }

  async function send(text) {
    let body;
    const turn = { role: "user", content: text };
    try {
      body = buildRequest(model(), [...history, turn]);
    } catch (error) {
      notify(error.message);
      return;
    }
    notify("");
    messages.querySelector(".empty")?.remove();
    messages.append(el("div.user", {}, el("div.role", { text: "user" }), el("div.user-text", { text })));
    const format = body.response_format?.type;
    const options = { json: format === "json_object" || format === "json_schema", logprobs: !!body.logprobs };
    const answer = new AnswerView(body.n || 1, options, !!body.store);
    messages.append(answer.node);
    scrollDown();
    $("prompt").value = "";

    controller = new AbortController();
    setBusy(true);
    const figures = { started: performance.now(), first: null, usage: null, id: null, error: null, stopped: false };
    try {
      for await (const chunk of stream("/v1/chat/completions", body, controller.signal)) {
        figures.id ||= chunk.id;
        if (chunk.usage) figures.usage = chunk.usage;
        for (const choice of chunk.choices || []) {
          const delta = choice.delta || {};
          if (figures.first === null && (delta.content || delta.tool_calls || delta.refusal)) {
            figures.first = performance.now();
          }
          answer.choice(choice.index).add(choice);
        }
        answer.schedule();
        if (messages.scrollHeight - messages.scrollTop - messages.clientHeight < 120) scrollDown();
      }
    } catch (error) {
      if (error.name === "AbortError") figures.stopped = true;
      else figures.error = error.message;
    } finally {
      figures.ended = performance.now();
      controller = null;
      setBusy(false);
    }
    answer.finish(figures);
    scrollDown();
    const reply = answer.choices[0]?.content;
    if (!figures.error) {
      history = [...history, turn];
      if (reply) history.push({ role: "assistant", content: reply });
    }
  }

  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (text && !controller) send(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => controller?.abort());
  $("clear").addEventListener("click", () => {
    controller?.abort();
    history = [];
    messages.replaceChildren(el("div.empty", { text: "Ask something. Answers stream as they are generated." }));
  });
  $("format").addEventListener("change", () => {
    $("schema-box").hidden = $("format").value !== "json_schema";
  });
}
