// The event stream: GET /api/v1/events (Server-Sent Events), so the page changes as the
// camera does, with no polling.
//
// It is read with fetch() rather than an EventSource, because an EventSource cannot
// send the bearer token: it would need a ticket in its URL, and its own reconnects
// would spend that single-use ticket. fetch() sends the token in the header like every
// other request, a 401 ends the session like any other, and on a reconnect the page
// sends Last-Event-ID itself, so the server replays what was missed.

import { endSession, session } from "./api.js";
import { report } from "./ui.js";

const TYPES = "photo.*,timelapse.*,gpio.changed";
const RETRY_MS = 3000;
const handlers = new Map(); // event type, or "sync" -> [handler(data)]
let controller = null;
let lastId = null;
let retry = null;

/** Call `handler(data)` for each event of `type`; "sync" when the views should load afresh. */
export function on(type, handler) {
  if (!handlers.has(type)) handlers.set(type, []);
  handlers.get(type).push(handler);
}

/**
 * A view that loads itself on entering its tab and again on "sync", and follows events
 * meanwhile: `view.show()` and `view.hide()` for its tab, `view.shown` for its handlers.
 */
export function followed(load) {
  const view = {
    shown: false,
    show() {
      view.shown = true;
      load().catch(report);
    },
    hide() {
      view.shown = false;
    },
  };
  on("sync", () => { if (view.shown) load().catch(report); });
  return view;
}

export function connect() {
  if (!controller) read();
}

export function disconnect() {
  controller?.abort();
  controller = null;
  clearTimeout(retry);
  lastId = null;
}

function emit(type, data) {
  for (const handler of handlers.get(type) || []) {
    try {
      handler(data);
    } catch (error) {
      console.warn(`handling ${type} failed`, error);
    }
  }
}

async function read() {
  const mine = new AbortController();
  controller = mine;
  const token = session.get()?.token;
  if (!token) return;
  const headers = { Authorization: `Bearer ${token}`, Accept: "text/event-stream" };
  if (lastId !== null) headers["Last-Event-ID"] = lastId;
  try {
    const response = await fetch(`/api/v1/events?types=${encodeURIComponent(TYPES)}`, {
      headers, cache: "no-store", credentials: "omit", signal: mine.signal });
    if (response.status === 401) {
      controller = null;
      endSession();
      return;
    }
    if (response.ok) {
      // What changed before this stream opened is not in it: load the views once.
      if (lastId === null) emit("sync");
      await parse(response.body.pipeThrough(new TextDecoderStream()).getReader());
    }
  } catch {
    // Aborted, or the connection dropped: see below.
  }
  if (controller === mine) retry = setTimeout(read, RETRY_MS);
}

async function parse(reader) {
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const fields = {};
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // a keepalive
        const colon = line.indexOf(":");
        fields[line.slice(0, colon)] = line.slice(colon + 1).replace(/^ /, "");
      }
      if (fields.id) lastId = fields.id;
      if (!fields.data) continue;
      const event = JSON.parse(fields.data);
      if (fields.event === "reset") emit("sync"); // the log did not reach back far enough
      else emit(fields.event, event.data);
    }
  }
}
