// Live view: WebRTC (WHEP) in a <video> when the browser and the server both can,
// else the MJPEG stream in an <img>; a switch under the picture picks either.
//
// An <img> cannot send the bearer token, so each MJPEG connection asks the API for a
// signed, single-use stream URL (POST /api/v1/stream/urls) that holds no token.
// WebRTC needs none: the offer is a fetch() with the token, and the session ends
// with a DELETE of its URL (and when the tab closes, with the peer connection).

import { offer, request, session } from "./api.js";
import { act } from "./ui.js";
import { addPhoto, openPhoto } from "./photos.js";

const RETRY_MS = 2000;
const MODE_KEY = "picam.liveMode";
const image = document.getElementById("live-image");
const video = document.getElementById("live-video");
const state = document.getElementById("live-state");
const mode = document.getElementById("live-mode");
const snapshot = document.getElementById("snapshot");
let shown = false;
let retry = null;
let peer = null; // { pc, location, token } while WebRTC is on
let serverH264 = null; // whether the server has live H.264 (from /api/v1/info)
let ending = null; // the last WebRTC session's DELETE
let offering = null; // the offer out, and the DELETE of its session if the view stopped meanwhile

image.addEventListener("load", () => { state.textContent = "Live"; });
image.addEventListener("error", () => {
  if (!shown || !image.getAttribute("src")) return;
  state.textContent = "The stream stopped; reconnecting…";
  schedule();
});
video.addEventListener("playing", () => { state.textContent = "Live"; });
mode.addEventListener("change", () => {
  localStorage.setItem(MODE_KEY, mode.value);
  stop();
  if (shown) connect();
});
addEventListener("pagehide", () => stop());

snapshot.addEventListener("click", (event) => act(event.target, async () => {
  const photo = await request("POST", "/api/v1/photos", {});
  addPhoto(photo);
  await openPhoto(photo);
}));

/** Whether this browser can receive H.264 over WebRTC. */
function browserH264() {
  const codecs = window.RTCRtpReceiver?.getCapabilities?.("video")?.codecs || [];
  return codecs.some((codec) => codec.mimeType.toLowerCase() === "video/h264");
}

export function show() {
  shown = true;
  connect();
}

export function hide() {
  shown = false;
  clearTimeout(retry);
  stop();
}

/** Settles once the WebRTC requests out are back (their token may be revoked then). */
export function ended() {
  return Promise.allSettled([ending, offering]);
}

/** The connection is lost: what shows is the last frame, not a live picture. */
export function offline() {
  clearTimeout(retry);
  snapshot.disabled = true;
  if (image.getAttribute("src") || peer) state.textContent = "Offline: the last picture received, not live";
}

/** After the connection came back: the old stream died with it, so start anew. */
export function resume() {
  snapshot.disabled = false;
  // The server may have restarted meanwhile, and its sessions with it: no DELETE. A
  // session that lives on ends with the peer connection, whose close now gets through.
  stop({ endSession: false });
  if (shown) connect();
}

/** End whichever stream runs; each frees its slot on the server. */
function stop({ endSession = true } = {}) {
  // Dropping the src closes the connection, which frees a stream slot on the server.
  image.removeAttribute("src");
  if (peer) {
    close(peer, endSession);
    peer = null;
    video.srcObject = null;
  }
}

function close({ pc, location, token }, endSession = true) {
  // keepalive: the DELETE still goes when the tab is closing. It goes first: the
  // peer's close also ends the session, and a DELETE after that would be a 404.
  // With the token of the offer: on logging out the page has forgotten it already.
  if (endSession && location && token) {
    ending = fetch(location, { method: "DELETE", keepalive: true, credentials: "omit",
                               headers: { Authorization: `Bearer ${token}` } }).catch(() => {});
  }
  pc.close();
}

async function connect() {
  clearTimeout(retry);
  state.textContent = "Connecting…";
  try {
    if (serverH264 === null) serverH264 = (await request("GET", "/api/v1/info")).h264?.enabled === true;
    const webrtc = serverH264 && browserH264();
    mode.querySelector('[value="webrtc"]').disabled = !webrtc;
    mode.value = webrtc && localStorage.getItem(MODE_KEY) !== "mjpeg" ? "webrtc" : "mjpeg";
    image.hidden = mode.value !== "mjpeg";
    video.hidden = mode.value !== "webrtc";
    if (mode.value === "webrtc") await connectWebrtc();
    else await connectMjpeg();
  } catch (error) {
    state.textContent = error.message;
    if (error.status !== 401) schedule(); // a 401 ends the session: the login form shows
  }
}

async function connectMjpeg() {
  const { url } = await request("POST", "/api/v1/stream/urls");
  if (shown) image.src = url;
}

async function connectWebrtc() {
  const pc = new RTCPeerConnection({ iceServers: [] }); // host candidates: no STUN server asked
  const current = { pc, location: null, token: session.get()?.token };
  peer = current;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addEventListener("track", (event) => { video.srcObject = new MediaStream([event.track]); });
  pc.addEventListener("connectionstatechange", () => {
    if (peer === current && ["failed", "disconnected"].includes(pc.connectionState)) {
      state.textContent = "The stream stopped; reconnecting…";
      stop({ endSession: false }); // the server's side of it fails as well, and ends it
      schedule();
    }
  });
  await pc.setLocalDescription(await pc.createOffer());
  // WHEP without trickle: the offer goes once all its candidates are in it.
  if (pc.iceGatheringState !== "complete") {
    await new Promise((resolve) => {
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") resolve();
      });
    });
  }
  offering = negotiate(current, pc.localDescription.sdp);
  const answer = await offering;
  if (answer !== null) await pc.setRemoteDescription({ type: "answer", sdp: answer });
}

/** The answer to the peer's offer; null if the view stopped meanwhile, once the
 * session the server made for it is deleted. */
async function negotiate(current, sdp) {
  const { answer, location } = await offer("/api/v1/stream/whep", sdp);
  current.location = location;
  if (peer === current) return answer;
  close(current); // hidden, switched or signed out while the offer was out
  await ending;
  return null;
}

function schedule() {
  clearTimeout(retry);
  retry = setTimeout(() => { if (shown) connect(); }, RETRY_MS);
}
