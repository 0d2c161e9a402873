// The form that starts a run: a catalog playbook (a version of it) or pasted YAML, parameters, environment, a check first.

import { api, fill, h, report } from "./lib.js";

/** Parameters as `key=value` lines (values stay text, as on the CLI) or one JSON object. */
export function parseParameters(text) {
  const trimmed = text.trim();
  if (!trimmed) return {};
  if (trimmed.startsWith("{")) {
    let value;
    try {
      value = JSON.parse(trimmed);
    } catch (err) {
      throw new Error(`parameters: not valid JSON (${err.message})`);
    }
    if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error("parameters: JSON must be an object");
    return value;
  }
  const params = {};
  trimmed.split("\n").forEach((line, i) => {
    if (!line.trim() || line.trim().startsWith("#")) return;
    const at = line.indexOf("=");
    if (at < 1 || !line.slice(0, at).trim()) throw new Error(`parameters line ${i + 1}: write key=value, got ${JSON.stringify(line.trim())}`);
    params[line.slice(0, at).trim()] = line.slice(at + 1);
  });
  return params;
}

export function startForm(root) {
  const source = playbookSource();
  const params = h("textarea", { id: "params", rows: 4, spellcheck: "false", "data-testid": "parameters",
    "aria-describedby": "params-hint", placeholder: "service=checkout\nreplicas=3" });
  const environment = h("input", { id: "environment", "data-testid": "environment", placeholder: "e.g. staging", spellcheck: "false" });
  const dryRun = h("input", { type: "checkbox", id: "dry-run", "data-testid": "dry-run" });
  const unsafe = h("input", { type: "checkbox", id: "allow-unsafe", "data-testid": "allow-unsafe-shell" });
  const eachStep = h("input", { type: "checkbox", id: "approval-required", "data-testid": "approval-required" });
  const onFailure = h("select", { id: "on-failure", "data-testid": "on-failure" },
    h("option", { value: "" }, "as the playbook says"),
    ["stop", "continue", "rollback"].map((policy) => h("option", { value: policy }, policy)));
  const startButton = h("button", { type: "submit", class: "button primary", "data-testid": "start" }, "Start run");
  const checkButton = h("button", { type: "button", class: "button", "data-testid": "validate" }, "Check only");
  const diagnostics = h("section", { class: "diagnostics", "data-testid": "diagnostics", "aria-label": "Playbook check", hidden: true });
  const form = h("form", { class: "start-form", "data-testid": "start-form", novalidate: true },
    source.el,
    h("div", { class: "field" }, h("label", { for: "params" }, "Parameters"), params,
      h("p", { id: "params-hint", class: "hint" }, "One key=value a line, or a JSON object.")),
    h("div", { class: "field" }, h("label", { for: "environment" }, "Environment"), environment),
    h("div", { class: "field" }, h("label", { for: "on-failure" }, "When a step fails"), onFailure),
    h("div", { class: "checks" },
      h("label", { for: "dry-run" }, dryRun, " Dry run (plan only, no action runs)"),
      h("label", { for: "allow-unsafe" }, unsafe, " Allow unsafe shell (recorded on the run)"),
      h("label", { for: "approval-required" }, eachStep, " Approve each step (someone else approves every step before it runs)")),
    h("div", { class: "actions" }, startButton, checkButton),
    diagnostics);
  root.append(h("h1", {}, "Start a run"), form);

  /** The request body, or null (with the reason reported) when something is missing. */
  const body = () => {
    let parameters;
    try {
      parameters = parseParameters(params.value);
      params.setAttribute("aria-invalid", "false");
    } catch (err) {
      params.setAttribute("aria-invalid", "true");
      params.focus();
      report("error", err.message);
      return null;
    }
    const out = { parameters, dry_run: dryRun.checked, allow_unsafe_shell: unsafe.checked,
      approval_required: eachStep.checked };
    if (environment.value.trim()) out.environment = environment.value.trim();
    if (onFailure.value) out.on_failure = onFailure.value;
    return source.addTo(out);
  };
  const showDiagnostics = (list, heading) => {
    diagnostics.hidden = false;
    fill(diagnostics, h("h2", {}, heading), list.length ? h("ul", {}, list.map((d) => diagnosticItem(d, source.textarea())))
      : h("p", {}, "No problems found."));
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const payload = body();
    if (!payload) return;
    startButton.disabled = true;
    diagnostics.hidden = true;
    const result = await api("/api/runs", { method: "POST", body: payload });
    startButton.disabled = false;
    if (result.ok) {
      report("ok", `Started run ${result.data.run_id}`);
      location.hash = `#/runs/${result.data.run_id}`;
      return;
    }
    report("error", `Start refused: ${result.error.message} [${result.status} ${result.error.code}]`);
    if (result.error.details && result.error.details.length) showDiagnostics(result.error.details, "The playbook has problems");
  });

  checkButton.addEventListener("click", async () => {
    const payload = body();
    if (!payload) return;
    const result = await check(payload);
    if (!result) return;
    const { valid, errors, diagnostics: found } = result;
    report(valid ? "ok" : "error", valid ? `The playbook is valid (${found.length} note${found.length === 1 ? "" : "s"})`
      : `The playbook has ${errors} error${errors === 1 ? "" : "s"}`);
    showDiagnostics(found, valid ? "Check passed" : "The playbook has problems");
  });
}

/** Validate what the form would start; null (reported) if the check itself failed. */
async function check(payload) {
  let text = payload.playbook;
  if (text === undefined) {
    const stored = await api(`/api/playbooks/${encodeURIComponent(payload.playbook_id)}`);
    if (!stored.ok) {
      report("error", `Check failed: ${stored.error.message}`);
      return null;
    }
    text = stored.data.yaml;
  }
  const request = { playbook: text, parameters: payload.parameters };
  if (payload.environment) request.environment = payload.environment;
  const result = await api("/api/validate", { method: "POST", body: request });
  if (!result.ok) {
    report("error", `Check failed: ${result.error.message}`);
    return null;
  }
  return result.data;
}

/** Where the playbook comes from: a version of one in the catalog (with its YAML to read), or pasted YAML. */
function playbookSource() {
  let playbooks = [];
  const select = h("select", { id: "pb-select", "data-testid": "playbook-select" });
  const version = h("select", { id: "pb-version", "data-testid": "playbook-version" });
  const description = h("p", { class: "muted", "data-testid": "playbook-description" });
  const preview = h("pre", { class: "yaml" });
  const copyButton = h("button", { type: "button", class: "button" }, "Edit a copy as YAML");
  const yaml = h("textarea", { id: "pb-yaml", rows: 16, spellcheck: "false", "data-testid": "playbook-yaml",
    placeholder: "name: my-playbook\nsteps:\n  - id: hello\n    action: shell\n    args: {command: echo hello}" });
  const storedRadio = h("input", { type: "radio", name: "source", value: "stored", id: "src-stored", "data-testid": "source-stored", checked: true });
  const yamlRadio = h("input", { type: "radio", name: "source", value: "yaml", id: "src-yaml", "data-testid": "source-yaml" });
  const storedPart = h("div", { class: "source-part" },
    h("label", { for: "pb-select" }, "Stored playbook"), select,
    h("label", { for: "pb-version" }, "Version"), version, description,
    h("details", {}, h("summary", {}, "Show its YAML"), preview, copyButton));
  const yamlPart = h("div", { class: "source-part", hidden: true },
    h("label", { for: "pb-yaml" }, "Playbook YAML"), yaml);
  const el = h("fieldset", {}, h("legend", {}, "Playbook"),
    h("div", { class: "radios" },
      h("label", { for: "src-stored" }, storedRadio, " Stored playbook"),
      h("label", { for: "src-yaml" }, yamlRadio, " Paste YAML")),
    storedPart, yamlPart);

  const pasted = () => yamlRadio.checked;
  const showSource = () => {
    storedPart.hidden = pasted();
    yamlPart.hidden = !pasted();
  };
  storedRadio.addEventListener("change", showSource);
  yamlRadio.addEventListener("change", showSource);

  /** `name@version` of the chosen version, or "" when none is chosen. */
  const chosenId = () => (select.value && version.value ? `${select.value}@${version.value}` : "");
  const loadPreview = async () => {
    preview.textContent = "";
    const id = chosenId();
    if (!id) {
      description.textContent = "";
      return;
    }
    const result = await api(`/api/playbooks/${encodeURIComponent(id)}`);
    if (id !== chosenId()) return;      // another choice was made meanwhile
    description.textContent = result.ok ? result.data.description || "" : "";
    preview.textContent = result.ok ? result.data.yaml : `cannot load it: ${result.error.message}`;
  };
  const loadVersions = () => {
    const chosen = playbooks.find((p) => p.name === select.value);
    fill(version, (chosen ? chosen.versions : []).map((v) => h("option", { value: v }, v === chosen.version ? `${v} (latest)` : v)));
    loadPreview();
  };
  select.addEventListener("change", loadVersions);
  version.addEventListener("change", loadPreview);
  copyButton.addEventListener("click", () => {
    yaml.value = preview.textContent;
    yamlRadio.checked = true;
    showSource();
    yaml.focus();
  });

  api("/api/playbooks").then((result) => {
    if (!result.ok) {
      fill(select, h("option", { value: "" }, "(cannot list playbooks)"));
      report("error", `Listing playbooks failed: ${result.error.message}`);
      return;
    }
    playbooks = result.data;
    fill(select, playbooks.map((p) => h("option", { value: p.name }, p.name)));
    if (!playbooks.length) {
      fill(select, h("option", { value: "" }, "(no stored playbooks: `playbook publish FILE` adds one)"));
      yamlRadio.checked = true;
      showSource();
    }
    loadVersions();
  });

  return {
    el,
    /** The YAML box when the playbook is pasted (diagnostics point into it), else null. */
    textarea: () => (pasted() ? yaml : null),
    /** `out` with the playbook or its id added; null (reported) when none is given. */
    addTo(out) {
      if (pasted()) {
        if (!yaml.value.trim()) {
          yaml.focus();
          report("error", "Paste the playbook's YAML first");
          return null;
        }
        return { ...out, playbook: yaml.value };
      }
      if (!chosenId()) {
        report("error", "Choose a stored playbook, or paste YAML");
        return null;
      }
      return { ...out, playbook_id: chosenId() };
    },
  };
}

function diagnosticItem(d, textarea) {
  const where = d.line != null ? `line ${d.line}${d.column != null ? `, column ${d.column}` : ""}` : "";
  const place = textarea && d.line != null
    ? h("button", { type: "button", class: "link", onclick: () => selectAt(textarea, d.line, d.column || 1) }, where)
    : where ? h("span", {}, where) : null;
  return h("li", { class: `diag sev-${d.severity}`, "data-testid": "diagnostic", "data-line": d.line ?? "", "data-step": d.step_id ?? "" },
    h("span", { class: `badge sev-${d.severity}` }, d.severity), " ",
    place, place ? " · " : "",
    d.step_id ? h("span", {}, `step ${d.step_id} · `) : "",
    h("code", {}, d.code), " ", h("span", { class: "diag-message" }, d.message));
}

/** Put the caret on line:column of the YAML, where a diagnostic points. */
function selectAt(textarea, line, column) {
  const lines = textarea.value.split("\n");
  let offset = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i++) offset += lines[i].length + 1;
  offset += Math.max(0, column - 1);
  textarea.focus();
  textarea.setSelectionRange(offset, Math.min(textarea.value.length, offset + 1));
}
