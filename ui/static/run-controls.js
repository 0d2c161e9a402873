// A run page's head: its title and status, the facts of the run, and the controls to steer it.

import { command, elapsed, fill, FINISHED, formatDuration, h, report, timeEl } from "./lib.js";

const STEERING = ["pause", "resume", "cancel", "retry", "rollback"];

export function runHead(runId, base) {
  const title = h("h1", { "data-testid": "run-title" }, "Run ", h("span", { class: "mono" }, runId));
  const status = h("span", { class: "badge s-new big", "data-testid": "run-status", "data-status": "new" }, "loading");
  const facts = h("dl", { class: "facts", "data-testid": "run-facts" });
  const reason = h("input", { id: "reason", "data-testid": "reason", placeholder: "why (recorded; a rollback needs one)" });
  const buttons = {
    pause: h("button", { type: "button", class: "button", "data-testid": "pause", disabled: true }, "Pause"),
    resume: h("button", { type: "button", class: "button", "data-testid": "resume", disabled: true }, "Resume"),
    cancel: h("button", { type: "button", class: "button danger", "data-testid": "cancel", disabled: true }, "Cancel run"),
    retry: h("button", { type: "button", class: "button", "data-testid": "retry", disabled: true,
                         "data-hint": "run the failed step and everything after it again; finished steps keep their outputs" },
             "Retry from failed step"),
    rollback: h("button", { type: "button", class: "button danger", "data-testid": "rollback", disabled: true }, "Roll back"),
  };
  const controls = h("section", { class: "controls", "aria-label": "Run controls" },
    h("label", { for: "reason" }, "Reason"), reason, Object.values(buttons));

  const control = async (name, label, body) => {
    const result = await command(`${label} run ${runId}`, `${base}/${name}`, body);
    if (result.ok && name !== "resume") reason.value = "";
  };
  buttons.pause.addEventListener("click", () => control("pause", "Pause", { reason: reason.value }));
  buttons.resume.addEventListener("click", () => control("resume", "Resume", {}));
  let armed = null;
  const disarm = () => {
    clearTimeout(armed);
    armed = null;
    buttons.cancel.textContent = "Cancel run";
    delete buttons.cancel.dataset.armed;
  };
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
  buttons.retry.addEventListener("click", () => control("retry", "Retry", { reason: reason.value.trim() }));
  buttons.rollback.addEventListener("click", () => {
    if (!reason.value.trim()) {
      reason.focus();
      report("error", "Roll back: give a reason first (it is recorded with your name)");
      return;
    }
    control("rollback", "Roll back", { reason: reason.value.trim() });
  });

  /** The view changed; `said` holds who last paused, resumed, cancelled or rolled back (with reason). */
  const update = (view, said) => {
    title.replaceChildren(view.playbook || "Run", " ", h("span", { class: "mono muted small" }, runId));
    status.className = `badge big s-${view.status}`;
    status.dataset.status = view.status;
    status.textContent = view.status.replaceAll("_", " ");
    renderFacts(facts, view, said);
    const finished = FINISHED.has(view.status);
    const may = view.may || {};           // what the engine would let the signed-in person do to this run
    buttons.pause.disabled = !may.pause || !["running", "waiting_approval", "rolling_back"].includes(view.status);
    buttons.resume.disabled = !may.resume || view.status !== "paused";
    buttons.cancel.disabled = !may.cancel || finished || view.status === "cancelling";
    if (buttons.cancel.disabled) disarm();
    buttons.retry.disabled = !may.retry || !["failed", "cancelled"].includes(view.status) || view.dry_run
      || view.phase === "rollback";
    buttons.rollback.disabled = !may.rollback || !finished || view.status === "rolled_back";
    reason.disabled = !STEERING.some((action) => may[action]);
    for (const [name, button] of Object.entries(buttons)) {
      button.title = may[name] ? (button.dataset.hint || "") : "your grants do not allow this on this run";
    }
  };

  const tick = (view) => {
    const duration = facts.querySelector('[data-testid="run-duration"]');
    if (duration) duration.textContent = formatDuration(elapsed(view.started_at, view.finished_at));
  };

  return { title, status, facts, controls, update, tick, dispose: disarm };
}

function renderFacts(facts, v, said) {
  const row = (label, value, id) => [h("dt", {}, label), h("dd", id ? { "data-testid": id } : {}, value)];
  const params = Object.entries(v.parameters || {});
  const who = (e) => [h("strong", {}, e.actor), e.reason ? ` — “${e.reason}”` : "", " at ", timeEl(e.at)];
  const shown = (val) => (typeof val === "string" ? val : JSON.stringify(val));
  fill(facts,
    row("Environment", v.environment || "–"),
    row("Started by", v.actor || "–", "started-by"),
    row("Started", timeEl(v.started_at)),
    row("Duration", h("span", { "data-testid": "run-duration" }, formatDuration(elapsed(v.started_at, v.finished_at)))),
    v.dry_run ? row("Mode", "dry run: plan only") : null,
    v.on_failure_chosen ? row("On failure", `${v.on_failure_chosen} (chosen at the start)`, "run-on-failure") : null,
    v.approval_required ? row("Approvals", "every step waits for one (asked at the start)", "run-approval-required") : null,
    params.length ? row("Parameters", h("span", { class: "mono" }, params.map(([k, val]) => `${k}=${shown(val)}`).join("  "))) : null,
    v.status === "paused" && said.paused ? row("Paused by", who(said.paused), "paused-by") : null,
    v.status === "paused" && !said.paused && v.paused_by ? row("Paused by", v.paused_by, "paused-by") : null,
    v.status !== "paused" && said.resumed ? row("Resumed by", who(said.resumed), "resumed-by") : null,
    v.cancel_requested_by && v.stopped_by_engine ? row("Stopped by", "the engine, which gave up on a message (see Failure)", "stopped-by-engine") : null,
    v.cancel_requested_by && !v.stopped_by_engine ? row("Cancelled by", said.cancel ? who(said.cancel) : v.cancel_requested_by, "cancelled-by") : null,
    said.retry ? row("Retried", who(said.retry), "retried-by") : null,
    said.rollback ? row("Rollback", who(said.rollback), "rollback-by") : null,
    v.failure ? row("Failure", h("span", { class: "error-text" }, v.failure), "failure") : null,
    v.rollback_failure ? row("Rollback failure", h("span", { class: "error-text" }, v.rollback_failure), "rollback-failure") : null);
}
