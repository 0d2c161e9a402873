// A run page's logs: recorded output per attempt, and the lines of attempts still running.

import { atBottom, fill, h, timeEl } from "./lib.js";

export function runLogs() {
  const select = h("select", { id: "log-step", "data-testid": "log-step" }, h("option", { value: "" }, "all steps"));
  const box = h("div", { class: "logs scroll-box", "data-testid": "logs", tabindex: "0", "aria-label": "Step logs" },
    h("p", { class: "muted" }, "No output yet."));
  const el = h("section", { class: "panel", "aria-labelledby": "logs-h" },
    h("div", { class: "title-row" }, h("h2", { id: "logs-h" }, "Logs"), h("label", { for: "log-step" }, "Step"), select), box);

  // Lines of a running attempt arrive as `live`; its recorded output (`log`) replaces them.
  const recorded = [];            // every log entry so far, in order
  const running = new Map();      // "step/attempt/stream" -> {line, text} of attempts still running
  const shown = (stepId) => !select.value || stepId === select.value;
  const blockOf = new WeakMap();  // each recorded entry's block, made once
  let queued = false;
  const render = () => {
    const stick = atBottom(box);
    const blocks = recorded.filter((entry) => shown(entry.step_id)).map((entry) => {
      if (!blockOf.has(entry)) blockOf.set(entry, logEntry(entry));
      return blockOf.get(entry);
    });
    for (const { line, text } of running.values()) {
      if (!shown(line.step_id)) continue;
      const block = logEntry({ ...line, phase: "step", text });
      block.classList.add("running");
      block.dataset.testid = "live-log";
      blocks.push(block);
    }
    fill(box, ...(blocks.length ? blocks : [h("p", { class: "muted" }, "No output yet.")]));
    if (stick) box.scrollTop = box.scrollHeight;
  };
  // What streams in is drawn once a frame: a run of thousands of steps sends thousands of entries at once.
  const renderSoon = () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      render();
    });
  };
  const show = (stepId, reveal) => {
    select.value = stepId;
    render();
    if (reveal) el.scrollIntoView({ block: "nearest", behavior: "smooth" });
  };
  select.addEventListener("change", () => show(select.value, false));
  show("", false);

  return {
    el,
    show,
    /** Recorded entries (the `log` event). */
    record(entries) {
      for (const entry of entries) {
        for (const key of [...running.keys()]) {
          if (key.startsWith(`${entry.step_id}/${entry.attempt}/`)) running.delete(key);
        }
        recorded.push(entry);
      }
      renderSoon();
    },
    /** One line of an attempt still running (the `live` event). */
    live(line) {
      const key = `${line.step_id}/${line.attempt}/${line.stream}`;
      const block = running.get(key) || { line, text: "" };
      block.text += `${line.text}\n`;
      running.set(key, block);
      renderSoon();
    },
    /** Offer every step of the run in the step filter. */
    steps(view) {
      const have = new Set([...select.options].map((o) => o.value));
      for (const step of view.steps) {
        if (!have.has(step.id)) select.append(h("option", { value: step.id }, step.name ? `${step.id} — ${step.name}` : step.id));
      }
    },
  };
}

function logEntry(entry) {
  return h("article", { class: `log-entry stream-${entry.stream}`, "data-testid": "log-entry", "data-step": entry.step_id },
    h("header", {}, h("span", { class: "mono" }, entry.step_id), ` · attempt ${entry.attempt}`,
      entry.phase !== "step" ? ` · ${entry.phase}` : "", ` · ${entry.stream} · `, timeEl(entry.at)),
    h("pre", {}, entry.text));
}
