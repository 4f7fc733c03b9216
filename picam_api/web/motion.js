// Motion: on/off, sensitivity, a mask rectangle drawn on the detector's preview, and
// the last events. Polled every second while the tab is open; the preview with it.

import { fetchBlob, request } from "./api.js";
import { act, el, facts, isOperator, notify, report, timeEl } from "./ui.js";

const PATH = "/api/v1/motion";
const preview = document.getElementById("motion-preview");
const box = document.getElementById("motion-drawing");
const enabled = document.getElementById("motion-enabled");
const sensitivity = document.getElementById("motion-sensitivity");
const eventsList = document.getElementById("motion-events");
let previewUrl = null;
let drag = null;
let masks = [];
// The settings a poll reads are stale if a PATCH was sent after the poll, or was out
// when it was sent: its late answer would undo a click.
let patches = 0;
let patchesOut = 0;

export async function show() {
  await poll();
}

export async function poll() {
  const sent = patchesOut === 0 ? patches : -1;
  const status = await request("GET", PATH);
  update(status, sent === patches);
  const blob = await fetchBlob(status.links.preview).catch((error) => { report(error); return null; });
  if (blob) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(blob);
    preview.src = previewUrl;
  }
}

export function reset() {
  eventsList.replaceChildren();
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = null;
  preview.removeAttribute("src");
}

function update(status, fresh) {
  if (fresh) {
    masks = status.masks;
    enabled.checked = status.enabled;
    // Not while someone is moving it.
    if (document.activeElement !== sensitivity) sensitivity.value = status.sensitivity;
  }
  facts(document.getElementById("motion-facts"), [
    ["State", status.active ? `${status.state}: motion` : status.state],
    ["Score now", status.score.toFixed(2)],
    ["Events", String(status.counters.events)],
    ["Masks", String(status.masks.length)],
    ["CPU", status.cpu.frame_ms === null ? null : `${status.cpu.frame_ms.toFixed(1)} ms a frame, ` +
      `${status.cpu.percent_of_core.toFixed(1)} % of a core`],
    ["Last error", status.last_error],
  ]);
  eventsList.replaceChildren(...status.events.map((event) => el("li", {},
    event.type === "motion.start" ? "Motion began " : "Motion ended ", timeEl(event.frame_time),
    ` (score ${event.score})`)));
  document.getElementById("motion-events-empty").hidden = status.events.length > 0;
}

async function patch(change) {
  const mine = (patches += 1);
  patchesOut += 1;
  try {
    update(await request("PATCH", PATH, change), mine === patches);
  } finally {
    patchesOut -= 1;
  }
}

enabled.addEventListener("change", () => act(enabled, () => patch({ enabled: enabled.checked })));
sensitivity.addEventListener("change", () =>
  act(sensitivity, () => patch({ sensitivity: Number(sensitivity.value) })));
document.getElementById("motion-clear").addEventListener("click", (event) =>
  act(event.currentTarget, () => patch({ masks: [] })));

// A mask is dragged out on the preview; its corners are shares of the picture.
function share(event) {
  const rect = preview.getBoundingClientRect();
  return [Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width)),
    Math.min(1, Math.max(0, (event.clientY - rect.top) / rect.height))];
}

preview.addEventListener("pointerdown", (event) => {
  if (!isOperator()) return;
  event.preventDefault();
  preview.setPointerCapture(event.pointerId);
  drag = { from: share(event), to: share(event) };
  draw();
});
preview.addEventListener("pointermove", (event) => {
  if (!drag) return;
  drag.to = share(event);
  draw();
});
preview.addEventListener("pointerup", () => {
  if (!drag) return;
  const [x0, y0] = drag.from;
  const [x1, y1] = drag.to;
  drag = null;
  box.hidden = true;
  const mask = { x: Math.min(x0, x1), y: Math.min(y0, y1), w: Math.abs(x1 - x0), h: Math.abs(y1 - y0) };
  if (mask.w < 0.01 || mask.h < 0.01) return;
  patch({ masks: [...masks, mask] }).catch(notify);
});

function draw() {
  const [x0, y0] = drag.from;
  const [x1, y1] = drag.to;
  Object.assign(box.style, { left: `${Math.min(x0, x1) * 100}%`, top: `${Math.min(y0, y1) * 100}%`,
    width: `${Math.abs(x1 - x0) * 100}%`, height: `${Math.abs(y1 - y0) * 100}%` });
  box.hidden = false;
}

