// GPIO: each configured device with its live state, kept current by the event stream.
// Outputs get a switch, toggle and blink; pwm devices a slider and pulse; inputs show
// their state and last change.

import { request } from "./api.js";
import * as stream from "./stream.js";
import { act, el, isOperator, timeEl } from "./ui.js";

const SWITCHED = new Set(["led", "output", "buzzer"]);
const INPUTS = new Set(["button", "input"]);
const list = document.getElementById("devices");
const cards = new Map(); // device name -> update(device)

const view = stream.followed(load);
export const show = view.show;
export const hide = view.hide;

stream.on("gpio.changed", (device) => cards.get(device.name)?.(device));

async function load() {
  const page = await request("GET", "/api/v1/gpio");
  for (const device of page.items) {
    if (!cards.has(device.name)) cards.set(device.name, deviceCard(device));
    cards.get(device.name)(device);
  }
  document.getElementById("devices-empty").hidden = page.items.length > 0;
}

export function reset() {
  cards.clear();
  list.replaceChildren();
}

function deviceCard(device) {
  const state = el("p", { class: "value" });
  const detail = el("p");
  const controls = el("div", { class: "actions" });
  let toggle = null;
  let slider = null;
  list.append(el("li", { class: "device card", "data-name": device.name },
    el("div", { class: "job-head" }, el("h3", {}, device.name),
      el("span", { class: "badge" }, `${device.kind}, ${device.pin}`)),
    state, detail, controls));

  const update = (now) => {
    state.textContent = describe(now);
    if (toggle) toggle.checked = now.value > 0;
    // Not while someone is moving it, which would pull it from under their finger.
    if (slider && document.activeElement !== slider) slider.value = now.value;
    if (INPUTS.has(now.kind)) {
      detail.replaceChildren(...(now.last_changed
        ? ["Last change ", timeEl(now.last_changed), `; ${now.edges} changes since start-up`]
        : ["No change since start-up"]));
    }
  };
  const send = (change) => request("PATCH", device.links.self, change).then(update);
  const button = (label, change) => el("button", { type: "button", class: "quiet",
    onclick: (event) => act(event.currentTarget, () => send(change)) }, label);

  if (isOperator() && SWITCHED.has(device.kind)) {
    toggle = el("input", { type: "checkbox", role: "switch", "aria-label": `${device.name} on` });
    toggle.addEventListener("change", () => act(toggle, () => send({ value: toggle.checked ? 1 : 0 })));
    controls.append(el("label", { class: "switch" }, toggle, "On"), button("Toggle", { toggle: true }),
      button("Blink", { blink: { on_time: 0.5, off_time: 0.5 } }));
  } else if (isOperator() && device.kind === "pwm") {
    slider = el("input", { type: "range", min: 0, max: 1, step: 0.05 });
    slider.addEventListener("change", () => act(slider, () => send({ value: Number(slider.value) })));
    controls.append(el("label", { class: "slider" }, "Level ", slider), button("Pulse", { pulse: {} }),
      button("Off", { value: 0 }));
  }
  return update;
}

function describe(device) {
  if (device.kind === "pwm") return `${Math.round(device.value * 100)} %`;
  if (INPUTS.has(device.kind)) return device.value ? "Active" : "Inactive";
  return device.value ? "On" : "Off";
}
