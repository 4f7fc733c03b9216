// The page: signing in and out, the view behind each tab, the event stream, the
// status poll, and the banner for a lost connection.

import { ConnectionLost, events, session, signIn, signOut } from "./api.js";
import * as gpio from "./gpio.js";
import * as live from "./live.js";
import * as motion from "./motion.js";
import * as photos from "./photos.js";
import * as status from "./status.js";
import * as stream from "./stream.js";
import * as timelapses from "./timelapses.js";
import { notify, tickTimes } from "./ui.js";

// By section id. Each may have show() and hide() (on entering and leaving its tab),
// poll() (every second while its tab is open) and reset() (on signing out). Photos,
// time-lapses and GPIO follow the event stream instead of polling; motion polls (its
// score and preview change with every frame).
const VIEWS = { live, photos, timelapses, gpio, motion, status };
const STATUS_EVERY_S = 5; // the mock banners, and the heartbeat that notices a lost connection
const TIMES_EVERY_S = 10;
const loginForm = document.getElementById("login");
let current = null;
let polling = null; // the poll in flight
let offline = false;
let seconds = 0;

function enter(value) {
  document.body.dataset.role = value.role;
  for (const node of document.querySelectorAll("[data-operator]")) node.hidden = value.role !== "operator";
  document.getElementById("who-name").textContent = value.user;
  document.getElementById("who-role").textContent = value.role;
  document.getElementById("who").hidden = false;
  document.getElementById("login-view").hidden = true;
  document.getElementById("app").hidden = false;
  route();
  stream.connect();
  status.poll().catch(notify);
}

function leave(message = "") {
  stream.disconnect();
  VIEWS[current]?.hide?.();
  current = null;
  for (const view of Object.values(VIEWS)) view.reset?.();
  delete document.body.dataset.role;
  document.getElementById("app").hidden = true;
  document.getElementById("who").hidden = true;
  document.getElementById("login-view").hidden = false;
  document.getElementById("login-error").textContent = message;
  loginForm.elements.user.focus();
}

function route() {
  if (!session.get()) return;
  const wanted = location.hash.slice(1);
  const name = Object.hasOwn(VIEWS, wanted) ? wanted : "live";
  if (name === current) return;
  if (current) {
    VIEWS[current].hide?.();
    document.getElementById(current).hidden = true;
  }
  current = name;
  document.getElementById(name).hidden = false;
  for (const tab of document.querySelectorAll(".tabs a")) {
    if (tab.hash === `#${name}`) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  VIEWS[name].show?.();
  poll();
}

function poll() {
  if (polling || !session.get()) return;
  polling = pollViews().finally(() => {
    polling = null;
  });
}

async function pollViews() {
  try {
    await VIEWS[current]?.poll?.();
    if (current !== "status" && (offline || seconds % STATUS_EVERY_S === 0)) await status.poll();
  } catch (error) {
    // A lost connection has its banner; signing out, the login form.
    if (!(error instanceof ConnectionLost) && session.get()) notify(error);
  }
}

loginForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const fields = loginForm.elements;
  const button = loginForm.querySelector("button");
  button.disabled = true;
  try {
    const value = await signIn(fields.user.value, fields.password.value);
    loginForm.reset();
    document.getElementById("login-error").textContent = "";
    enter(value);
  } catch (error) {
    document.getElementById("login-error").textContent =
      error.status === 401 ? "Wrong user name or password." : error.message;
  } finally {
    button.disabled = false;
  }
});

document.getElementById("logout").addEventListener("click", async () => {
  leave(); // first: the live view's DELETE of its WebRTC session carries the token
  // The token is forgotten now, and revoked once the requests out with it are back.
  const revoked = signOut(Promise.all([polling, live.ended()]));
  try {
    await revoked;
  } catch {
    // The server lets the token expire.
  }
});

events.addEventListener("signedout", () => leave("Your session has ended; sign in again."));
events.addEventListener("offline", () => {
  offline = true;
  document.getElementById("offline").hidden = false;
  live.offline();
});
events.addEventListener("online", () => {
  if (!offline) return;
  offline = false;
  document.getElementById("offline").hidden = true;
  live.resume();
});
window.addEventListener("hashchange", route);

setInterval(() => {
  seconds += 1;
  poll();
}, 1000);
setInterval(tickTimes, TIMES_EVERY_S * 1000);

const saved = session.get();
if (saved) enter(saved);
else leave();
