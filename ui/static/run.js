// One run, live: header and controls, approvals, the step graph, the timeline, logs, raw events.

import {
  api, badge, command, elapsed, fill, FINISHED, formatDuration, h, live, liveBadge, report, timeEl,
} from "./lib.js";
import { stepGraph } from "./graph.js";
import { gantt } from "./charts.js";

const BAD = new Set(["StepFailed", "RunFailed", "StepRollbackFailed", "RollbackFailed", "ApprovalRejected",
  "ApprovalAttemptRefused", "ApprovalTimedOut", "StepRemediationFailed", "RunCancelled"]);
const WAIT = new Set(["StepRetryScheduled", "StepNotRetried", "ApprovalRequested", "StepRemediationStarted"]);
const GOOD = new Set(["StepSucceeded", "RunCompleted", "ApprovalGranted", "StepRolledBack", "RollbackCompleted", "StepRemediated"]);
const PERSON = new Set(["RunPaused", "RunResumed", "RunCancelRequested", "ApprovalGiven", "RollbackStarted"]);

export function runDetail(root, runId) {
  const base = `/api/runs/${runId}`;
  let view = null;
  let heard = false;
  const lines = [];                       // timeline lines, in stream order
  const said = {};                        // who last paused, resumed, cancelled (with reason)
  const gateMessages = {};                // the approval message as asked (placeholders filled in)

  const state = liveBadge();
  const title = h("h1", { "data-testid": "run-title" }, "Run ", h("span", { class: "mono" }, runId));
  const status = h("span", { class: "badge s-new big", "data-testid": "run-status", "data-status": "new" }, "loading");
  const facts = h("dl", { class: "facts", "data-testid": "run-facts" });
  const reason = h("input", { id: "reason", "data-testid": "reason", placeholder: "why (recorded; a rollback needs one)" });
  const buttons = {
    pause: h("button", { type: "button", class: "button", "data-testid": "pause", disabled: true }, "Pause"),
    resume: h("button", { type: "button", class: "button", "data-testid": "resume", disabled: true }, "Resume"),
    cancel: h("button", { type: "button", class: "button danger", "data-testid": "cancel", disabled: true }, "Cancel run"),
    rollback: h("button", { type: "button", class: "button danger", "data-testid": "rollback", disabled: true }, "Roll back"),
  };
  const gates = h("div", { class: "gates" });
  const approvals = h("section", { class: "panel approvals", "data-testid": "approvals", "aria-labelledby": "approvals-h", hidden: true },
    h("h2", { id: "approvals-h" }, "Approvals"), gates);
  const graph = stepGraph({ onSelect: (stepId) => selectLogs(stepId, true) });
  const chart = h("div", { class: "gantt", "data-testid": "gantt" });
  const timelineBody = h("tbody");
  const timelineBox = h("div", { class: "scroll-box" }, h("table", { class: "timeline", "data-testid": "timeline" },
    h("caption", { class: "visually-hidden" }, "Every attempt, retry, wait and decision, oldest first"),
    h("thead", {}, h("tr", {}, ["Time", "Step", "Attempt", "What happened", "Who"].map((n) => h("th", { scope: "col" }, n)))),
    timelineBody));
  const logStep = h("select", { id: "log-step", "data-testid": "log-step" }, h("option", { value: "" }, "all steps"));
  const logs = h("div", { class: "logs scroll-box", "data-testid": "logs", tabindex: "0", "aria-label": "Step logs" },
    h("p", { class: "muted" }, "No output yet."));
  const logsSection = h("section", { class: "panel", "aria-labelledby": "logs-h" },
    h("div", { class: "title-row" }, h("h2", { id: "logs-h" }, "Logs"), h("label", { for: "log-step" }, "Step"), logStep), logs);
  const rawCount = h("span", { "data-testid": "raw-count" }, "0");
  const rawList = h("ol", { class: "raw-list" });
  const raw = h("details", { class: "panel raw", "data-testid": "raw-events" },
    h("summary", {}, "Raw events (", rawCount, ")"), rawList);

  const body = h("div", {},
    facts,
    h("section", { class: "controls", "aria-label": "Run controls" },
      h("label", { for: "reason" }, "Reason"), reason, Object.values(buttons)),
    approvals,
    h("section", { class: "panel", "aria-labelledby": "steps-h" }, h("h2", { id: "steps-h" }, "Steps"), graph.el),
    h("div", { class: "two-col" },
      h("section", { class: "panel", "aria-labelledby": "timeline-h" }, h("h2", { id: "timeline-h" }, "Timeline"), chart, timelineBox),
      logsSection),
    raw);
  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "#/runs" }, "Runs"), " › ", h("span", { class: "mono" }, runId)),
    h("div", { class: "title-row" }, title, status, state),
    body);

  // -- controls ---------------------------------------------------------------------------

  const control = async (name, label, body) => {
    const result = await command(`${label} run ${runId}`, `${base}/${name}`, body);
    if (result.ok && name !== "resume") reason.value = "";
  };
  buttons.pause.addEventListener("click", () => control("pause", "Pause", { reason: reason.value }));
  buttons.resume.addEventListener("click", () => control("resume", "Resume", {}));
  let armed = null;
  buttons.cancel.addEventListener("click", () => {
    if (!armed) {            // a second click within a few seconds confirms
      buttons.cancel.textContent = "Confirm cancel";
      buttons.cancel.dataset.armed = "true";
      armed = setTimeout(disarm, 5000);
      return;
    }
    disarm();
    control("cancel", "Cancel", { reason: reason.value });
  });
  const disarm = () => {
    clearTimeout(armed);
    armed = null;
    buttons.cancel.textContent = "Cancel run";
    delete buttons.cancel.dataset.armed;
  };
  buttons.rollback.addEventListener("click", () => {
    if (!reason.value.trim()) {
      reason.focus();
      report("error", "Roll back: give a reason first (it is recorded with your name)");
      return;
    }
    control("rollback", "Roll back", { reason: reason.value.trim() });
  });

  // -- the stream -------------------------------------------------------------------------

  const onEvent = (data) => {
    heard = true;
    const e = data.event;
    if (data.type === "RunPaused") said.paused = e;
    if (data.type === "RunResumed") said.resumed = e;
    if (data.type === "RunCancelRequested") said.cancel = e;
    if (data.type === "RollbackStarted") said.rollback = e;
    if (data.type === "ApprovalRequested") gateMessages[e.step_id] = e.message;
    for (const line of data.timeline) {
      lines.push(line);
      addTimelineRow(line);
    }
    addRaw(data);
    scheduleChart();
  };

  const addTimelineRow = (line) => {
    const stick = atBottom(timelineBox);
    const kind = BAD.has(line.kind) ? "bad" : WAIT.has(line.kind) ? "wait" : GOOD.has(line.kind) ? "good" : PERSON.has(line.kind) ? "person" : "";
    timelineBody.append(h("tr", { class: `k-${kind}`, "data-testid": "timeline-row", "data-kind": line.kind, "data-step": line.step_id || "" },
      h("td", {}, timeEl(line.at, { ms: true })), h("td", { class: "mono" }, line.step_id || ""),
      h("td", { class: "num" }, line.attempt ?? ""), h("td", {}, h("span", { class: "kind" }, line.kind), " ", line.detail),
      h("td", {}, line.actor || "")));
    if (stick) timelineBox.scrollTop = timelineBox.scrollHeight;
  };

  const addRaw = (data) => {
    rawCount.textContent = String(Number(rawCount.textContent) + 1);
    rawList.append(h("li", { "data-testid": "raw-event", "data-seq": data.seq, "data-type": data.type },
      h("code", {}, `#${data.seq} ${data.type}`), h("pre", {}, JSON.stringify(data.event, null, 2))));
  };

  const onView = (data) => {
    heard = true;
    view = data;
    title.replaceChildren(data.playbook || "Run", " ", h("span", { class: "mono muted small" }, runId));
    status.className = `badge big s-${data.status}`;
    status.dataset.status = data.status;
    status.textContent = data.status.replaceAll("_", " ");
    renderFacts();
    const finished = FINISHED.has(data.status);
    buttons.pause.disabled = !["running", "waiting_approval", "rolling_back"].includes(data.status);
    buttons.resume.disabled = data.status !== "paused";
    buttons.cancel.disabled = finished || data.status === "cancelling";
    if (buttons.cancel.disabled) disarm();
    buttons.rollback.disabled = !finished || data.status === "rolled_back";
    graph.update(data);
    renderGates();
    syncLogOptions();
    scheduleChart();
  };

  const renderFacts = () => {
    const v = view;
    const row = (label, value, id) => [h("dt", {}, label), h("dd", id ? { "data-testid": id } : {}, value)];
    const params = Object.entries(v.parameters || {});
    const who = (e) => [h("strong", {}, e.actor), e.reason ? ` — “${e.reason}”` : "", " at ", timeEl(e.at)];
    fill(facts,
      row("Environment", v.environment || "–"),
      row("Started by", v.actor || "–", "started-by"),
      row("Started", timeEl(v.started_at)),
      row("Duration", h("span", { "data-testid": "run-duration" }, formatDuration(elapsed(v.started_at, v.finished_at)))),
      v.dry_run ? row("Mode", "dry run: plan only") : null,
      params.length ? row("Parameters", h("span", { class: "mono" }, params.map(([k, val]) => `${k}=${typeof val === "string" ? val : JSON.stringify(val)}`).join("  "))) : null,
      v.status === "paused" && said.paused ? row("Paused by", who(said.paused), "paused-by") : null,
      v.status === "paused" && !said.paused && v.paused_by ? row("Paused by", v.paused_by, "paused-by") : null,
      v.status !== "paused" && said.resumed ? row("Resumed by", who(said.resumed), "resumed-by") : null,
      v.cancel_requested_by ? row("Cancelled by", said.cancel ? who(said.cancel) : v.cancel_requested_by, "cancelled-by") : null,
      said.rollback ? row("Rollback", who(said.rollback), "rollback-by") : null,
      v.failure ? row("Failure", h("span", { class: "error-text" }, v.failure), "failure") : null);
  };

  // -- approvals --------------------------------------------------------------------------

  const gateCards = new Map();
  const renderGates = () => {
    const gated = view.steps.filter((step) => step.approval_gate);
    approvals.hidden = gated.length === 0;
    for (const step of gated) {
      let card = gateCards.get(step.id);
      if (!card) {
        card = gateCard(step.id, base, runId);
        gateCards.set(step.id, card);
        gates.append(card.el);
      }
      card.update(step, gateMessages[step.id], FINISHED.has(view.status));
    }
  };

  // -- logs -------------------------------------------------------------------------------

  // The logs come on the run's own stream (`?logs=1`): one connection per run page.
  // Lines of a running attempt arrive as `live`; its recorded output (`log`) replaces them.
  const recorded = [];            // every log entry so far, in order
  const running = new Map();      // "step/attempt/stream" -> {line, text} of attempts still running
  const shown = (stepId) => !logStep.value || stepId === logStep.value;
  const renderLogs = () => {
    const stick = atBottom(logs);
    const blocks = recorded.filter((entry) => shown(entry.step_id)).map(logEntry);
    for (const { line, text } of running.values()) {
      if (!shown(line.step_id)) continue;
      const block = logEntry({ ...line, phase: "step", text });
      block.classList.add("running");
      block.dataset.testid = "live-log";
      blocks.push(block);
    }
    fill(logs, ...(blocks.length ? blocks : [h("p", { class: "muted" }, "No output yet.")]));
    if (stick) logs.scrollTop = logs.scrollHeight;
  };
  const onLog = (entries) => {
    for (const entry of entries) {
      for (const key of [...running.keys()]) {
        if (key.startsWith(`${entry.step_id}/${entry.attempt}/`)) running.delete(key);
      }
      recorded.push(entry);
    }
    renderLogs();
  };
  const onLive = (line) => {
    const key = `${line.step_id}/${line.attempt}/${line.stream}`;
    const block = running.get(key) || { line, text: "" };
    block.text += `${line.text}\n`;
    running.set(key, block);
    renderLogs();
  };
  const selectLogs = (stepId, reveal) => {
    logStep.value = stepId;
    renderLogs();
    if (reveal) logsSection.scrollIntoView({ block: "nearest", behavior: "smooth" });
  };
  const syncLogOptions = () => {
    const have = new Set([...logStep.options].map((o) => o.value));
    for (const step of view.steps) {
      if (!have.has(step.id)) logStep.append(h("option", { value: step.id }, step.name ? `${step.id} — ${step.name}` : step.id));
    }
  };
  logStep.addEventListener("change", () => selectLogs(logStep.value, false));

  // -- the chart of attempts and waits ----------------------------------------------------

  let chartQueued = false;
  const scheduleChart = () => {
    if (chartQueued) return;
    chartQueued = true;
    requestAnimationFrame(() => {
      chartQueued = false;
      const order = view ? view.waves.flat() : [];
      const active = view && !FINISHED.has(view.status);
      fill(chart, gantt(lines, { order, until: active ? new Date().toISOString() : view?.finished_at }));
    });
  };

  const closeRun = live(`${base}/stream?logs=1`, { event: onEvent, view: onView, log: onLog, live: onLive }, async (streamState) => {
    state.set(streamState);
    if (streamState !== "live" && !heard) {          // never got in: say why (usually no such run)
      const result = await api(base);
      if (!result.ok) {
        closeRun();
        state.set("closed");
        status.textContent = "unknown";
        report("error", `Run ${runId}: ${result.error.message}`);
        fill(body, h("p", { class: "error-text", "data-testid": "run-error" }, result.error.message, ". "),
          h("p", {}, h("a", { href: "#/runs" }, "Back to the runs")));
      }
    }
  });
  selectLogs("", false);
  const ticker = setInterval(() => {
    if (!view || FINISHED.has(view.status)) return;
    const duration = facts.querySelector('[data-testid="run-duration"]');
    if (duration) duration.textContent = formatDuration(elapsed(view.started_at, view.finished_at));
    graph.tick();
    scheduleChart();
  }, 1000);

  return () => {
    closeRun();
    clearInterval(ticker);
    disarm();
    graph.dispose();
  };
}

function gateCard(stepId, base, runId) {
  const comment = h("input", { id: `comment-${stepId}`, "data-testid": `comment-${stepId}`, placeholder: "optional, recorded" });
  const approve = h("button", { type: "button", class: "button primary", "data-testid": `approve-${stepId}` }, "Approve");
  const reject = h("button", { type: "button", class: "button danger", "data-testid": `reject-${stepId}` }, "Reject");
  const heading = h("h3", {});
  const message = h("p", { class: "gate-message" });
  const details = h("dl", { class: "facts compact" });
  const given = h("ul", { class: "given", "data-testid": `approvals-${stepId}` });
  const el = h("article", { class: "gate", "data-testid": `gate-${stepId}` }, heading, message, details, given,
    h("div", { class: "decide" }, h("label", { for: `comment-${stepId}` }, "Comment"), comment, approve, reject));
  const answer = async (verb, label) => {
    const result = await command(`${label} ${stepId} in run ${runId}`, `${base}/steps/${encodeURIComponent(stepId)}/${verb}`,
      { comment: comment.value });
    if (result.ok) comment.value = "";
  };
  approve.addEventListener("click", () => answer("approve", "Approve"));
  reject.addEventListener("click", () => answer("reject", "Reject"));

  const update = (step, asked, runFinished) => {
    const gate = step.approval_gate;
    el.dataset.gateStatus = gate.status;
    fill(heading, step.name || step.id, " ", badge(gate.status === "requested" ? "waiting" : gate.status, { "data-testid": `gate-status-${stepId}` }));
    message.textContent = asked || gate.message || `Approve step ${step.id}?`;
    const required = gate.required_approvers.length ? gate.required_approvers.join(", ") : "anyone";
    fill(details,
      h("dt", {}, "Required"), h("dd", { "data-testid": `required-${stepId}` }, required,
        gate.min_approvals > 1 ? ` (${gate.min_approvals} approvals)` : ""),
      gate.decided_by.length ? [h("dt", {}, "Decided by"), h("dd", {}, gate.decided_by.join(", "))] : null,
      gate.deadline ? [h("dt", {}, "Deadline"), h("dd", {}, timeEl(gate.deadline),
        gate.auto_approve_after_timeout ? " then approved automatically" : " then the step fails")] : null);
    fill(given, gate.approvals.map((a) => h("li", {}, "✓ ", h("strong", {}, a.actor),
      a.groups.length ? ` (as ${a.groups.join(", ")})` : "", a.comment ? ` — “${a.comment}”` : "", " · ", timeEl(a.at))));
    const open = gate.status === "requested" && !runFinished;
    approve.disabled = reject.disabled = comment.disabled = !open;
  };
  return { el, update };
}

function logEntry(entry) {
  return h("article", { class: `log-entry stream-${entry.stream}`, "data-testid": "log-entry", "data-step": entry.step_id },
    h("header", {}, h("span", { class: "mono" }, entry.step_id), ` · attempt ${entry.attempt}`,
      entry.phase !== "step" ? ` · ${entry.phase}` : "", ` · ${entry.stream} · `, timeEl(entry.at)),
    h("pre", {}, entry.text));
}

function atBottom(el) {
  return el.scrollHeight - el.scrollTop - el.clientHeight < 24;
}
