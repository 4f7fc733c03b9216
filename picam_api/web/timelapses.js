// Time-lapses: a form for a new job, checked here as the server checks it, with the
// server's own 422 messages shown next to the same fields; and the jobs, with their
// progress kept current by the event stream.

import { ApiError, fetchBlob, request } from "./api.js";
import * as stream from "./stream.js";
import { act, el, isOperator, saveBlob, timeEl } from "./ui.js";

// The server's rules (api/schemas.py, timelapse/service.py). The least interval is
// its config's timelapse.min_interval_s, which only the server knows.
const NAME = /^[\p{L}\p{N}_ .:-]{1,64}$/u;
const MAX_INTERVAL_S = 30 * 86400;
const MAX_DURATION_S = 10 * 366 * 86400;
const START_SLACK_MS = 60 * 1000;
const ACTIVE = new Set(["scheduled", "running", "paused"]);

const form = document.getElementById("timelapse-form");
const list = document.getElementById("jobs");
const cards = new Map(); // job id -> {item, update(job)}

// Each control gets a place for its error, which the control is described by.
for (const control of form.querySelectorAll("input[name], select[name]")) {
  const slot = el("p", { class: "field-error", "data-error": control.name, id: `error-${control.name}` });
  // One grid cell for the label and its error: on a desktop a sibling would take the
  // next cell, under another field. Not inside the label, whose text names the field.
  const label = control.closest("label");
  const cell = el("div", { class: "field" });
  label.replaceWith(cell);
  cell.append(label, slot);
  control.setAttribute("aria-describedby", slot.id);
}
for (const group of form.querySelectorAll("fieldset[data-field]")) {
  group.append(el("p", { class: "field-error", "data-error": group.dataset.field }));
}

form.elements.bound.addEventListener("change", showBound);
showBound();
form.addEventListener("submit", (event) => {
  event.preventDefault();
  act(form.querySelector("button[type=submit]"), create);
});

const view = stream.followed(load);
export const show = view.show;
export const hide = view.hide;

stream.on("timelapse.state", changed);
stream.on("timelapse.progress", changed);
stream.on("timelapse.deleted", (job) => { if (cards.has(job.id)) forget(job.id, cards.get(job.id)); });

/** A job the stream says changed: its card, made first in the list if new. */
function changed(job) {
  if (!view.shown) return;
  const isNew = !cards.has(job.id);
  const { item } = upsert(job);
  if (isNew) list.prepend(item);
  document.getElementById("jobs-empty").hidden = true;
}

async function load() {
  const page = await request("GET", "/api/v1/timelapses?limit=50");
  const seen = new Set();
  page.items.forEach((job, index) => {
    seen.add(job.id);
    const { item } = upsert(job);
    if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
  });
  for (const [id, card] of cards) {
    if (!seen.has(id)) forget(id, card);
  }
  document.getElementById("jobs-empty").hidden = cards.size > 0;
}

export function reset() {
  for (const [id, card] of cards) forget(id, card);
  clearForm();
}

function clearForm() {
  form.reset();
  showBound();
  showErrors({});
}

async function create() {
  const { body, errors } = readForm();
  showErrors(errors);
  if (Object.keys(errors).length) return;
  try {
    const { item } = upsert(await request("POST", "/api/v1/timelapses", body));
    list.prepend(item);
    document.getElementById("jobs-empty").hidden = true;
    clearForm();
    // On a phone the list is above the form, out of sight: show where the job went.
    item.classList.add("new");
    item.scrollIntoView({ block: "center", behavior: "smooth" });
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    showErrors(Object.keys(error.errors).length ? error.errors : { form: [error.message] });
  }
}

/** The request body, and {field: [message]} for what the server would refuse. */
function readForm() {
  const fields = form.elements;
  const body = {};
  const errors = {};
  const fail = (name, message) => { errors[name] = [message]; };
  const number = (name) => {
    const control = fields[name];
    if (control.validity.badInput) return NaN;
    return control.value.trim() === "" ? null : Number(control.value);
  };

  const name = fields.name.value.trim();
  if (name) body.name = name;
  if (name && !NAME.test(name)) fail("name", "1-64 letters, digits, spaces or . : _ -");
  body.interval_s = number("interval_s");
  if (body.interval_s === null) fail("interval_s", "How many seconds between frames?");
  else if (!(body.interval_s > 0 && body.interval_s <= MAX_INTERVAL_S)) {
    fail("interval_s", "must be more than 0 and at most 30 days");
  }
  const start = fields.start_at.value ? new Date(fields.start_at.value) : null;
  if (start) body.start_at = start.toISOString();
  if (start && start < Date.now() - START_SLACK_MS) fail("start_at", "is more than a minute in the past");

  const bound = fields.bound.value;
  if (bound === "frames") {
    body.frames = number("frames");
    if (!(Number.isInteger(body.frames) && body.frames >= 1)) fail("frames", "must be a whole number, 1 or more");
  } else if (bound === "duration_s") {
    body.duration_s = number("duration_s");
    if (!(body.duration_s > 0 && body.duration_s <= MAX_DURATION_S)) {
      fail("duration_s", "must be more than 0 and at most ten years");
    }
  } else if (bound === "end_at") {
    const endAt = fields.end_at.value ? new Date(fields.end_at.value) : null;
    if (!endAt) fail("end_at", "When should it stop?");
    else if (endAt <= (start || new Date())) fail("end_at", "must be after the start");
    else body.end_at = endAt.toISOString();
  }

  const from = fields["active_hours.start"].value;
  const to = fields["active_hours.end"].value;
  if (from || to) body.active_hours = { start: from, end: to };
  if (from && !to) fail("active_hours.end", "give both ends of the window, or neither");
  if (to && !from) fail("active_hours.start", "give both ends of the window, or neither");
  if (from && from === to) fail("active_hours", "start and end must differ (leave both empty for all day)");

  for (const side of ["width", "height"]) {
    const value = number(side);
    if (value === null) continue;
    body[side] = value;
    if (!(Number.isInteger(value) && value >= 16 && value <= 20000)) {
      fail(side, "must be a whole number from 16 to 20000");
    }
  }
  return { body, errors };
}

/** Show {field: [messages]} next to the fields ("active_hours.start" too); the rest above the button. */
function showErrors(errors) {
  for (const slot of form.querySelectorAll("[data-error]")) slot.textContent = "";
  for (const control of form.querySelectorAll("[aria-invalid]")) control.removeAttribute("aria-invalid");
  let first = null;
  for (const [field, messages] of Object.entries(errors)) {
    const slot = form.querySelector(`[data-error="${CSS.escape(field)}"]`)
      || form.querySelector('[data-error="form"]');
    slot.textContent = [slot.textContent, ...messages].filter(Boolean).join(" ");
    const control = form.elements[field];
    if (control instanceof HTMLElement) {
      control.setAttribute("aria-invalid", "true");
      first ||= control;
    }
  }
  first?.focus();
}

function showBound() {
  for (const label of form.querySelectorAll("[data-bound]")) {
    label.parentElement.hidden = label.dataset.bound !== form.elements.bound.value;
  }
}

/** The job's card, made if new (its caller puts it in place), showing `job`. */
function upsert(job) {
  if (!cards.has(job.id)) cards.set(job.id, jobCard(job));
  const card = cards.get(job.id);
  card.update(job);
  return card;
}

function forget(id, card) {
  card.item.remove();
  cards.delete(id);
}

function jobCard(job) {
  const title = el("h3");
  const state = el("span", { class: "state" });
  const progress = el("progress", { "aria-label": "Frames due so far" });
  const counts = el("p");
  const timing = el("p");
  const problem = el("p", { class: "field-error" });
  const actions = el("div", { class: "actions" });
  const buttons = {};
  const button = (key, label, action, style = "") => {
    buttons[key] = el("button", { type: "button", class: style,
      onclick: (event) => act(event.currentTarget, action) }, label);
    actions.append(buttons[key]);
  };
  const change = async (to) => upsert(await request("PATCH", job.links.self, { state: to }));
  if (isOperator()) {
    button("pause", "Pause", () => change("paused"));
    button("resume", "Resume", () => change("running"));
    button("cancel", "Cancel", async () => {
      if (confirm("Cancel this time-lapse? It cannot be resumed.")) await change("cancelled");
    }, "danger");
    button("delete", "Delete", async () => {
      if (!confirm("Delete this time-lapse? Its frames stay in Photos.")) return;
      await request("DELETE", job.links.self);
      forget(job.id, cards.get(job.id));
    }, "danger");
  }
  button("archive", "Download frames (.zip)", async () => {
    saveBlob(await fetchBlob(job.links.archive), `timelapse-${job.id}.zip`);
  }, "quiet");

  const item = el("li", { class: "job card", "data-id": job.id },
    el("div", { class: "job-head" }, title, state), progress, counts, timing, problem, actions);
  const update = (now) => {
    title.textContent = now.name || `Time-lapse ${now.id}`;
    state.textContent = now.pause_reason === "storage" ? "paused: disk full" : now.state;
    state.className = `state state-${now.state}`;
    const due = now.frames_captured + now.frames_missed + now.frames_failed;
    progress.hidden = !now.frames;
    progress.max = now.frames || 1;
    progress.value = due;
    counts.textContent = `${now.frames ? `${due} of ${now.frames} frames: ` : ""}`
      + `${now.frames_captured} captured, ${now.frames_missed} missed, ${now.frames_failed} failed`;
    const when = now.finished_at ? ["finished ", timeEl(now.finished_at)]
      : now.started_at ? ["started ", timeEl(now.started_at)] : ["starts ", timeEl(now.start_at)];
    const next = ACTIVE.has(now.state) && now.next_frame_at ? ["; next frame ", timeEl(now.next_frame_at)] : [];
    timing.replaceChildren(`Every ${now.interval_s} s; `, ...when, ...next);
    problem.textContent = now.last_error || "";
    const active = ACTIVE.has(now.state);
    const shown = { pause: now.state === "running" || now.state === "scheduled",
      resume: now.state === "paused", cancel: active, delete: !active, archive: now.frames_captured > 0 };
    for (const [key, node] of Object.entries(buttons)) node.hidden = !shown[key];
  };
  return { item, update };
}
