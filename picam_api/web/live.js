// Live view: the MJPEG stream in an <img>, and the snapshot button.
//
// An <img> cannot send the bearer token, so each connection asks the API for a
// signed, single-use stream URL (POST /api/v1/stream/urls) that holds no token.

import { request } from "./api.js";
import { act } from "./ui.js";
import { addPhoto, openPhoto } from "./photos.js";

const RETRY_MS = 2000;
const image = document.getElementById("live-image");
const state = document.getElementById("live-state");
const snapshot = document.getElementById("snapshot");
let shown = false;
let retry = null;

image.addEventListener("load", () => { state.textContent = "Live"; });
image.addEventListener("error", () => {
  if (!shown || !image.getAttribute("src")) return;
  state.textContent = "The stream stopped; reconnecting…";
  schedule();
});

snapshot.addEventListener("click", (event) => act(event.target, async () => {
  const photo = await request("POST", "/api/v1/photos", {});
  addPhoto(photo);
  await openPhoto(photo);
}));

export function show() {
  shown = true;
  connect();
}

export function hide() {
  shown = false;
  clearTimeout(retry);
  // Dropping the src closes the connection, which frees a stream slot on the server.
  image.removeAttribute("src");
}

/** The connection is lost: what shows is the last frame, not a live picture. */
export function offline() {
  clearTimeout(retry);
  snapshot.disabled = true;
  if (image.getAttribute("src")) state.textContent = "Offline: the last picture received, not live";
}

/** After the connection came back: the old stream died with it, so start anew. */
export function resume() {
  snapshot.disabled = false;
  if (shown) connect();
}

async function connect() {
  clearTimeout(retry);
  state.textContent = "Connecting…";
  try {
    const { url } = await request("POST", "/api/v1/stream/urls");
    if (shown) image.src = url;
  } catch (error) {
    state.textContent = error.message;
    if (error.status !== 401) schedule(); // a 401 ends the session: the login form shows
  }
}

function schedule() {
  clearTimeout(retry);
  retry = setTimeout(() => { if (shown) connect(); }, RETRY_MS);
}
