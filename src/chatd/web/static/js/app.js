// The page: tabs (#chat, #stored, #stored/ID), the model list, the API key box, notices.

import { apiKey, call } from "./api.js";
import { initChat } from "./chat.js";
import { el } from "./render.js";
import { initStored } from "./stored.js";

const $ = (id) => document.getElementById(id);

function notify(message, kind = "error") {
  const box = $("notice");
  box.textContent = message;
  box.className = `notice ${kind}`;
  box.hidden = !message;
}

function askForKey(message) {
  $("key-form").hidden = false;
  $("api-key").value = apiKey.get();
  if (message) notify(message);
  $("api-key").focus();
}

async function loadModels() {
  let models;
  try {
    models = (await call("GET", "/v1/models")).data;
  } catch (error) {
    if (error.status === 401) askForKey("This server needs an API key: enter it above (it stays in this browser).");
    else notify(`Could not list models: ${error.message}`);
    return;
  }
  notify("");
  const picker = $("model");
  const chosen = picker.value || localStorage.getItem("chatd.model");
  picker.replaceChildren(...models.map((m) => el("option", { value: m.id, text: m.id })));
  if (models.some((m) => m.id === chosen)) picker.value = chosen;
  $("stored-model").replaceChildren(el("option", { value: "", text: "any" }),
    ...models.map((m) => el("option", { value: m.id, text: m.id })));
}

const stored = initStored({ notify });
initChat({ model: () => $("model").value, notify });

function show() {
  const [view, id] = location.hash.slice(1).split("/");
  const name = view === "stored" ? "stored" : "chat";
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === name);
  $("chat-view").hidden = name !== "chat";
  $("stored-view").hidden = name !== "stored";
  if (name === "stored") stored.list().then(() => id && stored.open(decodeURIComponent(id)));
}

for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => {
    location.hash = tab.dataset.view;
  });
}
window.addEventListener("hashchange", show);
window.addEventListener("chatd:needs-key", () => askForKey("The server refused the key: enter a valid API key."));
$("model").addEventListener("change", () => localStorage.setItem("chatd.model", $("model").value));
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey.set($("api-key").value.trim());
  loadModels();
});
if (apiKey.get()) $("key-form").hidden = false;

loadModels();
show();
