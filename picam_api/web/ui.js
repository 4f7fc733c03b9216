// Small DOM helpers the views share: elements, times, sizes, messages, downloads.

/** `el("button", {type: "button", class: "quiet"}, "Text", child)`; text is never parsed as HTML. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined));
  return node;
}

/** A `<dl>`'s content from [term, value] pairs; values may be nodes. */
export function facts(list, pairs) {
  list.replaceChildren(...pairs.filter(([, value]) => value !== null && value !== undefined)
    .flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const exact = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const UNITS = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400],
  ["hour", 3600], ["minute", 60], ["second", 1]];

/** A `<time>` that says "3 minutes ago", with the exact time on hover; `tickTimes` keeps it current. */
export function timeEl(iso) {
  const node = el("time", { datetime: iso, title: exactTime(iso) });
  node.textContent = ago(iso);
  return node;
}

export function exactTime(iso) {
  return exact.format(new Date(iso));
}

export function tickTimes(root = document) {
  for (const node of root.querySelectorAll("time[datetime]")) node.textContent = ago(node.dateTime);
}

function ago(iso) {
  const seconds = (new Date(iso) - Date.now()) / 1000;
  if (Math.abs(seconds) < 5) return "just now";
  const [unit, size] = UNITS.find(([, span]) => Math.abs(seconds) >= span);
  return relative.format(Math.round(seconds / size), unit);
}

export function bytes(count) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let index = 0;
  while (count >= 1000 && index < units.length - 1) {
    count /= 1000;
    index += 1;
  }
  return `${count.toFixed(index && count < 10 ? 1 : 0)} ${units[index]}`;
}

export function duration(seconds) {
  const parts = [[Math.floor(seconds / 86400), "d"], [Math.floor(seconds / 3600) % 24, "h"],
    [Math.floor(seconds / 60) % 60, "min"]].filter(([n]) => n > 0);
  return parts.length ? parts.map(([n, unit]) => `${n} ${unit}`).join(" ") : `${Math.floor(seconds)} s`;
}

/** Show an error (or any message) in the page's alert banner for a while. */
export function notify(error) {
  const banner = document.getElementById("notice");
  banner.textContent = error.message || String(error);
  banner.hidden = false;
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { banner.hidden = true; }, 8000);
}

/** `notify`, except for a lost connection, which has a banner of its own. */
export function report(error) {
  if (error.name !== "ConnectionLost") notify(error);
}

/** Save a Blob under `name`, as a click on a download link would. */
export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  el("a", { href: url, download: name }).click();
  // The download has its own copy once it started.
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

/** Run an action from a button: disabled while it runs, errors shown. */
export async function act(button, action) {
  button.disabled = true;
  try {
    await action();
  } catch (error) {
    notify(error);
  } finally {
    button.disabled = false;
  }
}

/** Operator controls exist only for operators: remove them for anyone else. */
export function isOperator() {
  return document.body.dataset.role === "operator";
}
