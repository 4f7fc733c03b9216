// The API client: the bearer token, problem+json errors, and the connection's state.
//
// The token lives in sessionStorage (gone with the tab); the password is sent
// once, to POST /api/v1/tokens, and never kept. Requests omit cookies and HTTP
// auth, so a 401 never makes the browser pop up its own login box.

const SESSION_KEY = "picam.session";

/** An answer of 4xx/5xx: `detail` is the server's sentence, `errors` its per-field messages. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.errors = problem.errors || {};
  }
}

/** The server could not be reached at all. */
export class ConnectionLost extends Error {
  constructor() {
    super("The connection to the camera is lost.");
    this.name = "ConnectionLost";
  }
}

/** "online", "offline" and "signedout" (the token stopped working). */
export const events = new EventTarget();

export const session = {
  get() {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  },
  set(value) {
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
  },
  clear() {
    sessionStorage.removeItem(SESSION_KEY);
  },
};

/** Trade a user name and password for a token; resolves to the stored session. */
export async function signIn(user, password) {
  const bytes = new TextEncoder().encode(`${user}:${password}`);
  const basic = btoa(String.fromCharCode(...bytes));
  // Basic credentials are what a browser could send by itself, so the server takes
  // them only with a JSON content type (docs/security.md), even with no body.
  const headers = { Authorization: `Basic ${basic}`, "Content-Type": "application/json" };
  const response = await send("POST", "/api/v1/tokens", { headers });
  const body = await response.json();
  const value = { token: body.token, user: body.user, role: body.role, expires_at: body.expires_at };
  session.set(value);
  return value;
}

/**
 * Forget the token at once, then revoke it once `settled` is: the requests still
 * out with it would otherwise come back 401.
 */
export async function signOut(settled) {
  const current = session.get();
  session.clear();
  await settled;
  if (!current) return;
  await send("DELETE", "/api/v1/tokens/current", { headers: { Authorization: `Bearer ${current.token}` } });
}

/** A JSON request with the bearer token; resolves to the body, or null for 204. */
export async function request(method, path, json) {
  const headers = { Accept: "application/json" };
  if (json !== undefined) headers["Content-Type"] = "application/json";
  const body = json === undefined ? undefined : JSON.stringify(json);
  // A GET revalidates what the browser kept (If-None-Match): an unchanged answer is a
  // 304 with no body, read from the browser's cache.
  const cache = method === "GET" ? "no-cache" : "no-store";
  const response = await send(method, path, { headers: { ...bearer(), ...headers }, body, cache });
  return response.status === 204 ? null : response.json();
}

/** A WHEP offer: POST the SDP with the bearer token; resolves to the answer and its session URL. */
export async function offer(path, sdp) {
  const headers = { ...bearer(), "Content-Type": "application/sdp" };
  const response = await send("POST", path, { headers, body: sdp });
  return { answer: await response.text(), location: response.headers.get("Location") };
}

/** A file (photo, thumbnail, archive) as a Blob, fetched with the bearer token. */
export async function fetchBlob(path) {
  // Photos never change, so the browser's cache may answer (the server says so).
  return (await send("GET", path, { headers: bearer(), cache: "default" })).blob();
}

function bearer() {
  const current = session.get();
  // Signed out while a view's work was under way: its next request is not sent.
  if (!current) throw new ApiError(401, { detail: "Signed out." });
  return { Authorization: `Bearer ${current.token}` };
}

async function send(method, path, { headers, body, cache = "no-store" }) {
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache, credentials: "omit" });
  } catch {
    events.dispatchEvent(new Event("offline"));
    throw new ConnectionLost();
  }
  events.dispatchEvent(new Event("online"));
  if (response.ok) return response;
  const problem = await response.json().catch(() => ({}));
  // Only the token in use ending is news: one forgotten on logging out was revoked on purpose.
  const current = session.get();
  if (response.status === 401 && current && headers.Authorization === `Bearer ${current.token}`) endSession();
  throw new ApiError(response.status, problem);
}

/** The token stopped working: forget it, and tell the page. */
export function endSession() {
  session.clear();
  events.dispatchEvent(new Event("signedout"));
}
