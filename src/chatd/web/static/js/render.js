// Rendering helpers: sanitised Markdown, elements, numbers, the logprob tooltip.

import { marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.js";

marked.setOptions({ gfm: true, breaks: false });

/** Markdown -> sanitised HTML: model output is untrusted. */
export function markdown(text) {
  return DOMPurify.sanitize(marked.parse(text || ""));
}

/** A DOM element: el("div.a.b", {title: "x"}, child, "text"). */
export function el(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split(".");
  const node = document.createElement(tag || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export function formatTime(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleString();
}

/** A tool call card: the function's name and its arguments pretty-printed. */
export function toolCallCard(call) {
  return el(
    "div.tool-call",
    {},
    el("div.tool-call-head", {}, el("span.tool-badge", { text: "tool call" }),
      el("code.tool-name", { text: call.function?.name || "" }),
      call.id ? el("span.tool-id", { text: call.id }) : null),
    el("pre.tool-args", {}, el("code", { text: pretty(call.function?.arguments || "") })),
  );
}

const tooltip = () => document.getElementById("tooltip");

function showLogprob(event) {
  const span = event.target.closest(".tok");
  if (!span) return;
  const entry = span.logprob;
  const box = tooltip();
  const row = (token, logprob, chosen) =>
    el("tr", { class: chosen ? "chosen" : undefined },
      el("td", {}, el("code", { text: JSON.stringify(token) })),
      el("td.num", { text: `${(Math.exp(logprob) * 100).toFixed(1)}%` }),
      el("td.num", { text: logprob.toFixed(3) }));
  const table = el("table", {}, row(entry.token, entry.logprob, true));
  for (const alt of entry.top_logprobs || []) {
    if (alt.token !== entry.token) table.append(row(alt.token, alt.logprob, false));
  }
  box.replaceChildren(table);
  box.hidden = false;
  const rect = span.getBoundingClientRect();
  box.style.left = `${Math.min(rect.left, window.innerWidth - box.offsetWidth - 8)}px`;
  box.style.top = `${rect.bottom + 6}px`;
}

/** Tokens as spans whose hover shows their logprob and the top alternatives. */
export function logprobTokens(entries) {
  const box = el("div.tokens", { onmouseover: showLogprob, onmouseout: () => (tooltip().hidden = true) });
  for (const entry of entries) {
    const span = el("span.tok", { text: entry.token });
    span.logprob = entry;
    const p = Math.exp(entry.logprob);
    span.style.setProperty("--p", p.toFixed(3));
    box.append(span);
  }
  return box;
}
