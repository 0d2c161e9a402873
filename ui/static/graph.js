// The step graph: one column per wave, parallel groups boxed, arrows from each step's needs.

import { badge, elapsed, fill, formatDuration, h, s, timeEl } from "./lib.js";

// Beyond this many, arrows tell nothing (two parallel groups of 100, one after the other, are 10,000 of them) and
// drawing them froze the page; the waves still show the order.
const MAX_ARROWS = 1500;

export function stepGraph({ onSelect }) {
  const canvas = h("div", { class: "graph-canvas" });
  const arrows = s("svg", { class: "arrows", "aria-hidden": "true" });
  const el = h("div", { class: "graph", "data-testid": "step-graph" }, h("p", { class: "muted" }, "Waiting for the run…"));
  const omitted = h("p", { class: "muted small", "data-testid": "arrows-omitted", hidden: true });
  const nodes = new Map();
  let shape = "";
  let steps = new Map();
  let drawQueued = false;
  const resize = new ResizeObserver(() => queueDraw());

  const build = (view) => {
    nodes.clear();
    const placed = new Set(view.waves.flat());
    const waves = view.waves.map((ids) => ids.map((id) => steps.get(id)).filter(Boolean));
    const stray = view.steps.filter((step) => !placed.has(step.id));
    if (stray.length) waves.push(stray);
    canvas.replaceChildren(arrows, ...waves.map((wave, i) => column(wave, i, stray.length && i === waves.length - 1)));
    fill(el, canvas, omitted);
    resize.disconnect();
    resize.observe(canvas);
  };

  const column = (wave, i, isStray) => {
    const col = h("div", { class: "wave", "data-testid": `wave-${i}` }, h("h3", { class: "wave-title" }, isStray ? "Not planned" : `Wave ${i + 1}`));
    const groups = new Map();
    for (const step of wave) {
      const node = stepNode(step, onSelect);
      nodes.set(step.id, node);
      if (!step.parallel_group) {
        col.append(node.el);
        continue;
      }
      let box = groups.get(step.parallel_group);
      if (!box) {
        box = h("div", { class: "group", role: "group", "aria-label": `parallel group ${step.parallel_group}`,
          "data-testid": `group-${step.parallel_group}` }, h("div", { class: "group-title" }, "parallel: ", step.parallel_group));
        groups.set(step.parallel_group, box);
        col.append(box);
      }
      box.append(node.el);
    }
    return col;
  };

  const queueDraw = () => {
    if (drawQueued) return;
    drawQueued = true;
    requestAnimationFrame(() => {
      drawQueued = false;
      const needs = [...nodes.values()].reduce((n, node) => n + node.step.depends_on.length, 0);
      omitted.hidden = needs <= MAX_ARROWS;
      omitted.textContent = `${needs} dependencies between steps: too many to draw; each wave runs after the one before.`;
      if (needs <= MAX_ARROWS) drawArrows(canvas, arrows, nodes);
      else arrows.replaceChildren();
    });
  };

  return {
    el,
    update(view) {
      steps = new Map(view.steps.map((step) => [step.id, step]));
      const nextShape = JSON.stringify([view.waves, view.steps.map((step) => step.id)]);
      if (nextShape !== shape) {
        shape = nextShape;
        build(view);
      }
      for (const [id, node] of nodes) if (steps.has(id)) updateNode(node, steps.get(id));
      queueDraw();
    },
    tick() {
      for (const node of nodes.values()) {
        if (node.step.status === "running") node.meta.querySelector(".step-time").textContent = timing(node.step);
      }
    },
    dispose() {
      resize.disconnect();
    },
  };
}

function stepNode(step, onSelect) {
  const name = h("button", { type: "button", class: "step-name", title: "Show this step's logs" }, step.name || step.id);
  name.addEventListener("click", () => onSelect(step.id));
  const status = h("span");
  const meta = h("div", { class: "step-meta" });
  const note = h("div", { class: "step-note" });
  const after = step.depends_on.length ? h("div", { class: "step-after" }, "after: ", step.depends_on.join(", ")) : null;
  const el = h("div", { class: "step", "data-testid": `step-${step.id}`, "data-step": step.id },
    name, step.name ? h("div", { class: "mono small muted" }, step.id) : null, h("div", { class: "step-line" }, status, meta), after, note);
  return { el, status, meta, note, step };
}

function updateNode(node, step) {
  node.step = step;
  const waiting = step.gate === "requested";
  node.el.className = `step st-${step.status}${waiting ? " gate-waiting" : ""}${step.rollback ? ` rb-${step.rollback}` : ""}`;
  node.el.dataset.status = step.status;
  node.el.dataset.gate = step.gate || "";
  fill(node.status, badge(waiting ? "waiting_approval" : step.status));
  const bits = [step.action, step.attempt > 1 ? `attempt ${step.attempt}` : null].filter(Boolean).join(" · ");
  fill(node.meta, bits, " ", h("span", { class: "step-time" }, timing(step)));
  const notes = [];
  if (step.gate && step.gate !== "requested") notes.push(`gate ${step.gate}${step.gate_decided_by.length ? ` by ${step.gate_decided_by.join(", ")}` : ""}`);
  if (step.retry === "waiting") notes.push(h("span", { class: "note-wait" }, "retry at ", timeEl(step.retry_due)));
  if (step.retry === "deciding") notes.push(h("span", { class: "note-wait" }, "deciding on a retry"));
  if (step.remediation) notes.push(`remediation ${step.remediation}`);
  if (step.status === "skipped" && step.reason) notes.push(`skipped: ${step.reason}`);
  if (step.error) notes.push(h("span", { class: "error-text" }, step.category ? `${step.category}: ` : "", step.error));
  if (step.rollback) notes.push(h("span", {}, `rollback: ${step.rollback.replaceAll("_", " ")}`));
  if (step.rollback_error) notes.push(h("span", { class: "error-text" }, step.rollback_error));
  fill(node.note, notes.map((n) => h("div", {}, n)));
}

function timing(step) {
  if (step.status === "running") return formatDuration(elapsed(step.started_at));
  return step.finished_at && step.started_at ? formatDuration(step.duration_ms || elapsed(step.started_at, step.finished_at)) : "";
}

function drawArrows(canvas, arrows, nodes) {
  const box = canvas.getBoundingClientRect();
  arrows.setAttribute("width", canvas.scrollWidth);
  arrows.setAttribute("height", canvas.scrollHeight);
  const paths = [s("defs", {}, s("marker", { id: "arrowhead", viewBox: "0 0 8 8", refX: "7", refY: "4", markerWidth: "7", markerHeight: "7", orient: "auto" },
    s("path", { d: "M0,0 L8,4 L0,8 z", class: "arrowhead" })))];
  const rects = new Map([...nodes].map(([id, node]) => [id, node.el.getBoundingClientRect()]));  // once per step
  for (const [id, node] of nodes) {
    const to = rects.get(id);
    for (const need of node.step.depends_on) {
      const from = rects.get(need);
      if (!from) continue;
      const x1 = from.right - box.left, y1 = from.top + from.height / 2 - box.top;
      const x2 = to.left - box.left - 2, y2 = to.top + to.height / 2 - box.top;
      const bend = Math.max(24, (x2 - x1) / 2);
      paths.push(s("path", { d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}`, class: "arrow",
        "data-from": need, "data-to": id, "marker-end": "url(#arrowhead)" }));
    }
  }
  arrows.replaceChildren(...paths);
}
