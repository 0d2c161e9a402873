// A run page's history: the chart of attempts and waits, the timeline table, and the raw events.

import { EVENT_TONES } from "./constants.js";
import { atBottom, fill, FINISHED, h, timeEl } from "./lib.js";
import { gantt } from "./charts.js";

const CHART_EVERY_MS = 500;
const ROWS_EVERY_MS = 250;
const TONE = new Map(Object.entries(EVENT_TONES).flatMap(([tone, kinds]) => kinds.map((kind) => [kind, tone])));

export function runHistory() {
  const lines = [];                       // timeline lines, in stream order
  const chart = h("div", { class: "gantt", "data-testid": "gantt" });
  const body = h("tbody");
  const box = h("div", { class: "scroll-box" }, h("table", { class: "timeline", "data-testid": "timeline" },
    h("caption", { class: "visually-hidden" }, "Every attempt, retry, wait and decision, oldest first"),
    h("thead", {}, h("tr", {}, ["Time", "Step", "Attempt", "What happened", "Who"].map((n) => h("th", { scope: "col" }, n)))),
    body));
  const rawCount = h("span", { "data-testid": "raw-count" }, "0");
  const rawList = h("ol", { class: "raw-list" });
  const raw = h("details", { class: "panel raw", "data-testid": "raw-events" },
    h("summary", {}, "Raw events (", rawCount, ")"), rawList);
  const panel = h("section", { class: "panel", "aria-labelledby": "timeline-h" },
    h("h2", { id: "timeline-h" }, "Timeline"), chart, box);

  // Rows are added a batch at a time, at most four times a second: each change to the table lays all of it out
  // again, and a row at a time (an event at a time) froze the page for minutes on a run of thousands of events.
  const rows = [];
  const raws = [];
  let flushQueued = false;
  const flush = () => {
    flushQueued = false;
    const stick = atBottom(box);
    body.append(...rows.splice(0));
    rawList.append(...raws.splice(0));
    rawCount.textContent = String(rawList.children.length);
    if (stick) box.scrollTop = box.scrollHeight;
  };
  const flushSoon = () => {
    if (flushQueued) return;
    flushQueued = true;
    setTimeout(() => requestAnimationFrame(flush), ROWS_EVERY_MS);
  };

  const addLine = (line) => {
    lines.push(line);
    rows.push(h("tr", { class: `k-${TONE.get(line.kind) || ""}`, "data-testid": "timeline-row", "data-kind": line.kind,
      "data-step": line.step_id || "" },
    h("td", {}, timeEl(line.at, { ms: true })), h("td", { class: "mono" }, line.step_id || ""),
    h("td", { class: "num" }, line.attempt ?? ""), h("td", {}, h("span", { class: "kind" }, line.kind), " ", line.detail),
    h("td", {}, line.actor || "")));
  };

  const addRaw = (data) => {
    raws.push(h("li", { "data-testid": "raw-event", "data-seq": data.seq, "data-type": data.type },
      h("code", {}, `#${data.seq} ${data.type}`), h("pre", {}, JSON.stringify(data.event, null, 2))));
  };

  let view = null;
  // The chart is drawn anew each time, a lane per step: at most twice a second, however fast the events come.
  let chartQueued = false;
  let chartDrawn = -Infinity;
  const drawChart = () => {
    if (chartQueued) return;
    chartQueued = true;
    setTimeout(() => requestAnimationFrame(() => {
      chartQueued = false;
      chartDrawn = performance.now();
      const order = view ? view.waves.flat() : [];
      const active = view && !FINISHED.has(view.status);
      fill(chart, gantt(lines, { order, until: active ? new Date().toISOString() : view?.finished_at }));
    }), Math.max(0, chartDrawn + CHART_EVERY_MS - performance.now()));
  };

  return {
    panel,
    raw,
    /** One stored event with its timeline lines. */
    add(data) {
      for (const line of data.timeline) addLine(line);
      addRaw(data);
      flushSoon();
      drawChart();
    },
    update(next) {
      view = next;
      drawChart();
    },
    tick: drawChart,
  };
}
