// mlxtune ui: the pairs page's keyboard (j/k move, a accept, r reject, e edit), its errors,
// and the chat's streamed answers. No framework beyond htmx.
(function () {
  "use strict";
  let current = null; // the key of the pair the keys act on

  function cards() { return Array.from(document.querySelectorAll("article.pair")); }
  function card() { return current && document.getElementById("pair-" + current); }
  function say(text, bad) {
    const status = document.getElementById("status");
    if (status) { status.textContent = text; status.className = bad ? "bad" : ""; }
  }
  function select(el) {
    cards().forEach((c) => c.classList.toggle("current", c === el));
    if (!el) return;
    current = el.dataset.key;
    el.scrollIntoView({ block: "nearest" });
  }
  function move(step) {
    const all = cards();
    const at = all.indexOf(card());
    const next = all[Math.min(all.length - 1, Math.max(0, at + step))];
    if (next) select(next);
  }
  function openEditor(el) {
    const form = el.querySelector("form.editor");
    form.hidden = false;
    form.querySelector("textarea").focus();
  }
  function decide(verdict) {
    const el = card();
    const button = el && el.querySelector("button." + verdict);
    if (!button) return;
    button.click();
    move(1);
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const editor = target.closest && target.closest("form.editor");
    if (editor) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        editor.requestSubmit();
      } else if (event.key === "Escape") {
        editor.hidden = true;
        select(editor.closest("article.pair"));
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName)) return;
    if (!cards().length) return;
    if (!card()) {
      select(cards()[0]);
      if (event.key === "j" || event.key === "k") { event.preventDefault(); return; }  // j: the first
    }
    const keys = { j: () => move(1), k: () => move(-1), a: () => decide("accept"),
      r: () => decide("reject"), e: () => openEditor(card()) };
    const act = keys[event.key];
    if (act) { event.preventDefault(); act(); }
  });

  document.addEventListener("click", (event) => {
    const el = event.target.closest && event.target.closest("article.pair");
    if (el && !event.target.closest("form.editor")) select(el);
    if (event.target.closest && event.target.closest("button.edit")) openEditor(el);
    if (event.target.closest && event.target.closest("button.cancel")) {
      event.target.closest("form.editor").hidden = true;
    }
  });

  document.addEventListener("htmx:afterSwap", (event) => {
    const el = event.detail.target;
    if (el && el.id && el.id.startsWith("pair-")) {
      const swapped = document.getElementById(el.id);
      if (swapped) swapped.classList.add("saved");
      select(card());
      say("saved: " + (swapped ? swapped.querySelector(".review-state b").textContent : ""));
    }
  });
  document.addEventListener("htmx:responseError", (event) => {
    const shown = event.detail.elt.closest("[data-show-errors]");
    if (shown) {  // a view loaded on demand says why it cannot be shown, in its place
      event.detail.target.textContent = event.detail.xhr.responseText;
      event.detail.target.classList.add("error");
      return;
    }
    say("not saved: " + event.detail.xhr.responseText, true);
  });
  document.addEventListener("htmx:sendError", () => say("not saved: the server is not answering", true));

  // ---------------------------------------------------------------- chat
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.id !== "chat") return;
    event.preventDefault();
    const answer = document.getElementById("answer");
    const finish = document.getElementById("finish");
    const data = new FormData(form);
    const body = { question: data.get("question"), model: data.get("model") };
    if (data.get("max_tokens")) body.max_tokens = Number(data.get("max_tokens"));
    answer.textContent = "";
    finish.textContent = "…";
    form.querySelector("button[type=submit]").disabled = true;
    try {
      const response = await fetch(form.dataset.url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": document.body.dataset.token },
        body: JSON.stringify(body),
      });
      if (!response.ok) throw new Error(await response.text());
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const line = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (!line.startsWith("data: ")) continue;
          const item = JSON.parse(line.slice(6));
          if (item.text !== undefined) answer.textContent += item.text;
          if (item.error) finish.textContent = "error: " + item.error;
          if (item.done) {
            const s = item.stats || {};
            finish.textContent = "ended: " + item.done +
              (s.generation_tokens ? " · " + s.generation_tokens + " tokens" : "");
            finish.dataset.done = item.done;
          }
        }
      }
    } catch (error) {
      finish.textContent = "error: " + error.message;
    } finally {
      form.querySelector("button[type=submit]").disabled = false;
    }
  });
})();
