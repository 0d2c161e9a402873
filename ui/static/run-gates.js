// A run page's approvals: one card per gated step, to approve or reject while its gate waits.

import { badge, command, fill, h, timeEl } from "./lib.js";

export function gatePanel(runId, base) {
  const cards = new Map();
  const gates = h("div", { class: "gates" });
  const el = h("section", { class: "panel approvals", "data-testid": "approvals", "aria-labelledby": "approvals-h", hidden: true },
    h("h2", { id: "approvals-h" }, "Approvals"), gates);

  /** `asked` maps a step to its approval message as asked (placeholders filled in). */
  const update = (view, asked, runFinished) => {
    const gated = view.steps.filter((step) => step.approval_gate);
    el.hidden = gated.length === 0;
    for (const step of gated) {
      let card = cards.get(step.id);
      if (!card) {
        card = gateCard(step.id, base, runId);
        cards.set(step.id, card);
        gates.append(card.el);
      }
      card.update(step, asked[step.id], runFinished, (view.may && view.may.gates && view.may.gates[step.id]) || {});
    }
  };
  return { el, update };
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

  const update = (step, asked, runFinished, may) => {
    const gate = step.approval_gate;
    el.dataset.gateStatus = gate.status;
    fill(heading, step.name || step.id, " ",
      badge(gate.status === "requested" ? "waiting" : gate.status, { "data-testid": `gate-status-${stepId}` }));
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
    approve.disabled = !open || !may.approve;     // `may`: what the engine would let the signed-in person decide
    reject.disabled = !open || !may.reject;
    comment.disabled = approve.disabled && reject.disabled;
    const notYours = "your grants do not allow this on this gate";
    approve.title = may.approve ? "" : notYours;
    reject.title = may.reject ? "" : notYours;
  };
  return { el, update };
}
