// Charts drawn as inline SVG: horizontal bars, stacked bars over time, and a run's attempts lane chart.

import { formatDuration, h, s } from "./lib.js";

const W = 640;                 // every chart is drawn 640 wide and scales with its box
export const PALETTE = ["#d1495b", "#edae49", "#00798c", "#30638e", "#8e5572", "#66a182", "#b05f2c", "#5c6b73", "#a44a3f", "#4f5d75"];

function frame(testid, title, svg, extra) {
  return h("figure", { class: "chart", "data-testid": testid }, h("figcaption", {}, title), svg, extra);
}

function svgBox(height, label) {
  return s("svg", { viewBox: `0 0 ${W} ${height}`, width: "100%", role: "img", "aria-label": label, preserveAspectRatio: "xMinYMin meet" });
}

function clip(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/** Horizontal bars: items [{label, value, text, cls}], value in 0..max (bars scale to the largest if max is not given). */
export function hbars(testid, title, items, { max, empty = "No data yet." } = {}) {
  if (!items.length) return frame(testid, title, h("p", { class: "muted empty-chart" }, empty));
  const rowH = 24, left = 210, right = 170;
  const top = Math.max(max ?? 0, ...items.map((i) => i.value || 0)) || 1;
  const svg = svgBox(items.length * rowH + 6, title);
  items.forEach((item, i) => {
    const y = i * rowH + 4;
    const width = Math.max(item.value ? 2 : 0, ((item.value || 0) / top) * (W - left - right));
    svg.append(
      s("text", { x: left - 8, y: y + 13, "text-anchor": "end", class: "label" }, clip(item.label, 30), s("title", {}, item.label)),
      s("rect", { x: left, y: y + 1, width: W - left - right, height: 16, class: "track" }),
      s("rect", { x: left, y: y + 1, width, height: 16, rx: 2, class: `bar ${item.cls || ""}`, "data-testid": "bar",
        "data-label": item.label, "data-value": item.value ?? "" }, s("title", {}, `${item.label}: ${item.text}`)),
      s("text", { x: left + width + 6, y: y + 13, class: "value" }, item.text));
  });
  return frame(testid, title, svg);
}

/** Stacked bars per hour: hours [{hour, categories: {name: n}}] in order, one colour per category. */
export function stackedBars(testid, title, hours, { empty = "Nothing recorded." } = {}) {
  const categories = [...new Set(hours.flatMap((x) => Object.keys(x.categories)))].sort();
  if (!categories.length) return frame(testid, title, h("p", { class: "muted empty-chart" }, empty));
  const colour = (c) => PALETTE[categories.indexOf(c) % PALETTE.length];
  const H = 220, left = 40, bottom = 36, topPad = 10;
  const plotH = H - bottom - topPad;
  const most = Math.max(1, ...hours.map((x) => Object.values(x.categories).reduce((a, b) => a + b, 0)));
  const slot = (W - left - 8) / hours.length;
  const barW = Math.max(2, Math.min(36, slot * 0.7));
  const svg = svgBox(H, title);
  for (const tick of new Set([0, Math.round(most / 2), most])) {
    const y = topPad + plotH * (1 - tick / most);
    svg.append(s("line", { x1: left, x2: W - 4, y1: y, y2: y, class: "gridline" }),
      s("text", { x: left - 6, y: y + 4, "text-anchor": "end", class: "axis" }, String(tick)));
  }
  const every = Math.ceil(hours.length / 12);
  hours.forEach((x, i) => {
    const cx = left + slot * i + slot / 2;
    let y = topPad + plotH;
    for (const c of categories) {
      const n = x.categories[c] || 0;
      if (!n) continue;
      const height = (n / most) * plotH;
      y -= height;
      svg.append(s("rect", { x: cx - barW / 2, y, width: barW, height, style: `fill:${colour(c)}`, class: "bar", "data-testid": "bar",
        "data-category": c, "data-hour": x.hour }, s("title", {}, `${hourLabel(x.hour, true)}: ${n} ${c}`)));
    }
    if (i % every === 0) svg.append(s("text", { x: cx, y: H - bottom + 16, "text-anchor": "middle", class: "axis" }, hourLabel(x.hour)));
  });
  const legend = h("ul", { class: "legend" }, categories.map((c) => h("li", {}, h("span", { class: "swatch", style: `background:${colour(c)}` }), c)));
  return frame(testid, title, svg, legend);
}

function hourLabel(hour, long = false) {
  const at = new Date(hour.replace(/Z$/, ":00Z"));
  const clock = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  return long ? `${at.toLocaleDateString()} ${clock}` : clock;
}

// -- one run's attempts, waits and retries over time ------------------------------------------

const LANE_KINDS = {
  queue: "waiting for an executor", run: "running", ok: "succeeded", fail: "failed", retry: "waiting to retry",
  gate: "waiting for approval", rollback: "rolling back", rbfail: "rollback failed",
};

/** Segments per step from timeline lines: [{step, kind, start, end, open, attempt}]. */
export function segments(lines, untilMs) {
  const out = [];
  const open = new Map();
  const begin = (step, kind, at, attempt) => {
    if (!open.has(`${step}|${kind}`)) open.set(`${step}|${kind}`, { at, attempt });
  };
  const end = (step, kind, at, as = kind) => {
    const started = open.get(`${step}|${kind}`);
    if (!started) return false;
    open.delete(`${step}|${kind}`);
    out.push({ step, kind: as, start: started.at, end: at, attempt: started.attempt });
    return true;
  };
  const paused = [];
  let pausedAt = null;
  for (const line of lines) {
    const at = Date.parse(line.at);
    const step = line.step_id;
    switch (line.kind) {
      case "StepScheduled": end(step, "retry", at); begin(step, "queue", at, line.attempt); break;
      case "StepStarted": end(step, "queue", at); begin(step, "run", at, line.attempt); break;
      case "StepSucceeded": end(step, "run", at, "ok"); break;
      case "StepFailed":
        end(step, "queue", at);
        if (!end(step, "run", at, "fail")) out.push({ step, kind: "fail", start: at, end: at, attempt: line.attempt });
        break;
      case "StepRetryScheduled": begin(step, "retry", at, line.attempt); break;
      case "StepNotRetried": end(step, "retry", at); break;
      case "ApprovalRequested": begin(step, "gate", at); break;
      case "ApprovalGranted": case "ApprovalRejected": case "ApprovalTimedOut": end(step, "gate", at); break;
      case "StepRollbackStarted": begin(step, "rollback", at, line.attempt); break;
      case "StepRolledBack": end(step, "rollback", at); break;
      case "StepRollbackFailed": end(step, "rollback", at, "rbfail"); break;
      case "RunPaused": pausedAt = at; break;
      case "RunResumed": if (pausedAt != null) paused.push([pausedAt, at]); pausedAt = null; break;
      case "RunCancelled": case "RunCompleted": case "RunFailed": case "RollbackCompleted": case "RollbackFailed":
        for (const [key, started] of open) {
          const [step2, kind] = key.split("|");
          out.push({ step: step2, kind, start: started.at, end: at, attempt: started.attempt });
        }
        open.clear();
        break;
      default:
    }
  }
  for (const [key, started] of open) {
    const [step, kind] = key.split("|");
    out.push({ step, kind, start: started.at, end: untilMs, attempt: started.attempt, open: true });
  }
  if (pausedAt != null) paused.push([pausedAt, untilMs]);
  return { segments: out, paused };
}

/** A lane per step: when each attempt waited, ran, failed, retried; paused stretches shaded. */
export function gantt(lines, { order = [], until } = {}) {
  if (!lines.length) return h("p", { class: "muted" }, "Nothing has happened yet.");
  const t0 = Date.parse(lines[0].at);
  const last = Date.parse(lines[lines.length - 1].at);
  const t1 = Math.max(last, until ? Date.parse(until) : last, t0 + 1);
  const { segments: segs, paused } = segments(lines, t1);
  const steps = [...new Set([...order, ...segs.map((x) => x.step)])].filter(Boolean);
  const segsOf = new Map(steps.map((step) => [step, []]));     // by step once: a lookup per lane was steps × segments
  for (const seg of segs) segsOf.get(seg.step)?.push(seg);
  const laneH = 20, left = 130, top = 20, right = 12;
  const height = top + steps.length * laneH + 4;
  const x = (t) => left + ((t - t0) / (t1 - t0)) * (W - left - right);
  const svg = svgBox(height, "Attempts, waits and retries of each step over time");
  for (const [a, b] of paused) {
    svg.append(s("rect", { x: x(a), y: top - 4, width: Math.max(1, x(b) - x(a)), height: height - top + 4, class: "paused-band" },
      s("title", {}, `paused for ${formatDuration(b - a)}`)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    svg.append(s("line", { x1: x(t), x2: x(t), y1: top - 4, y2: height, class: "gridline" }),
      s("text", { x: x(t), y: 12, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", class: "axis" }, `+${formatDuration(t - t0)}`));
  }
  steps.forEach((step, i) => {
    const y = top + i * laneH;
    svg.append(s("text", { x: left - 6, y: y + 13, "text-anchor": "end", class: "label" }, clip(step, 18), s("title", {}, step)));
    for (const seg of segsOf.get(step)) {
      const width = Math.max(2, x(seg.end) - x(seg.start));
      const what = `${step}${seg.attempt ? ` attempt ${seg.attempt}` : ""}: ${LANE_KINDS[seg.kind]} ${formatDuration(seg.end - seg.start)}${seg.open ? " so far" : ""}`;
      svg.append(s("rect", { x: x(seg.start), y: y + 3, width, height: laneH - 6, rx: 2, class: `lane lane-${seg.kind}`,
        "data-testid": "lane", "data-step": step, "data-kind": seg.kind }, s("title", {}, what)));
    }
  });
  const legend = h("ul", { class: "legend" }, ["queue", "run", "ok", "fail", "retry", "gate", "rollback"].map((k) =>
    h("li", {}, h("span", { class: `swatch lane-${k}` }), LANE_KINDS[k])),
  paused.length ? h("li", {}, h("span", { class: "swatch paused-band" }), "paused") : null);
  return h("div", {}, svg, legend);
}
