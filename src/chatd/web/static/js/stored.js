// The stored-completions view: list with filters, open one with its messages, delete.

import { call } from "./api.js";
import { parsePairs } from "./chat.js";
import { el, formatTime, markdown, toolCallCard } from "./render.js";

const $ = (id) => document.getElementById(id);

function query(after) {
  const params = new URLSearchParams();
  params.set("limit", $("stored-limit").value || "20");
  params.set("order", $("stored-order").value);
  if ($("stored-model").value) params.set("model", $("stored-model").value);
  for (const [key, value] of Object.entries(parsePairs($("stored-metadata").value, "Metadata filter"))) {
    params.set(`metadata[${key}]`, value);
  }
  if (after) params.set("after", after);
  return params.toString();
}

function metadataText(metadata) {
  return Object.entries(metadata || {}).map(([k, v]) => `${k}=${v}`).join(", ");
}

function messageText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.map((part) => part.text ?? "").join("");
  return "";
}

function preview(completion) {
  const message = completion.choices?.[0]?.message || {};
  const text = message.content || (message.tool_calls ? `tool call: ${message.tool_calls[0].function.name}` : "");
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

export function initStored({ notify }) {
  const tbody = $("stored-table").querySelector("tbody");
  const detail = $("stored-detail");
  let last = null;

  async function list(more = false) {
    let page;
    try {
      page = await call("GET", `/v1/chat/completions?${query(more ? last : null)}`);
    } catch (error) {
      notify(error.message);
      return;
    }
    notify("");
    if (!more) tbody.replaceChildren();
    for (const completion of page.data) {
      tbody.append(el("tr", { "data-id": completion.id, onclick: () => open(completion.id) },
        el("td", { text: formatTime(completion.created) }),
        el("td", {}, el("code", { text: completion.id })),
        el("td", { text: completion.model }),
        el("td", { text: metadataText(completion.metadata) }),
        el("td.preview", { text: preview(completion) })));
    }
    last = page.last_id ?? last;
    $("stored-more").hidden = !page.has_more;
    $("stored-empty").hidden = tbody.children.length > 0;
  }

  async function open(id) {
    for (const row of tbody.children) row.classList.toggle("selected", row.dataset.id === id);
    let completion, messages;
    try {
      [completion, messages] = await Promise.all([
        call("GET", `/v1/chat/completions/${encodeURIComponent(id)}`),
        call("GET", `/v1/chat/completions/${encodeURIComponent(id)}/messages?limit=100`),
      ]);
    } catch (error) {
      notify(error.message);
      return;
    }
    notify("");
    const usage = completion.usage || {};
    detail.replaceChildren(
      el("div.detail-head", {},
        el("h2", {}, el("code", { text: completion.id })),
        el("button.danger", { type: "button", id: "stored-delete", text: "Delete", onclick: () => remove(id) })),
      el("dl.facts", {},
        el("dt", { text: "model" }), el("dd", { text: completion.model }),
        el("dt", { text: "created" }), el("dd", { text: formatTime(completion.created) }),
        el("dt", { text: "metadata" }), el("dd", { text: metadataText(completion.metadata) || "none" }),
        el("dt", { text: "usage" }),
        el("dd", { text: `${usage.prompt_tokens ?? "?"} prompt + ${usage.completion_tokens ?? "?"} completion` })),
      el("h3", { text: "Messages" }),
      ...messages.data.map((m) => el("div.stored-message", {},
        el("div.role", { text: m.role }), el("div.user-text", { text: messageText(m.content) }))),
      el("h3", { text: "Answer" }),
      ...completion.choices.map((choice) => {
        const body = el("div.choice-content");
        body.innerHTML = markdown(choice.message?.content || "");
        return el("div.choice", { "data-index": choice.index },
          el("div.choice-head", {}, el("span", { text: `choice ${choice.index}` }),
            el("span.finish", { text: `finish: ${choice.finish_reason}` })),
          body, ...(choice.message?.tool_calls || []).map(toolCallCard));
      }),
    );
    detail.hidden = false;
  }

  async function remove(id) {
    try {
      await call("DELETE", `/v1/chat/completions/${encodeURIComponent(id)}`);
    } catch (error) {
      notify(error.message);
      return;
    }
    tbody.querySelector(`tr[data-id="${CSS.escape(id)}"]`)?.remove();
    $("stored-empty").hidden = tbody.children.length > 0;
    detail.hidden = true;
    detail.replaceChildren();
    notify(`Deleted ${id}.`, "info");
  }

  $("stored-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    list();
  });
  $("stored-more").addEventListener("click", () => list(true));
  return { list, open };
}
