// Photos: thumbnails, newest first, a page at a time as the list scrolls into view,
// and a dialog to see one with its metadata, download it or delete it.
//
// An <img> cannot send the bearer token, so images are fetched and shown as
// blob: URLs, each revoked when its element goes.

import { fetchBlob, request } from "./api.js";
import * as stream from "./stream.js";
import { act, bytes, el, exactTime, facts, isOperator, notify, timeEl } from "./ui.js";

const FIRST_PAGE = "/api/v1/photos?limit=24";
const gallery = document.getElementById("gallery");
const end = document.getElementById("gallery-end");
const dialog = document.getElementById("photo-dialog");
const dialogImage = document.getElementById("photo-image");
const download = document.getElementById("photo-download");
const thumbnails = new Map(); // photo id -> blob: URL
let next = FIRST_PAGE; // the next page's URL, null after the last one
let loading = false;
let generation = 0; // bumped by reset(), so a page that arrives late is dropped
let current = null; // the photo in the dialog
let shown = false; // whether the Photos tab is open (the stream adds photos only then)

// The end-of-list marker coming into view loads the next page.
const observer = new IntersectionObserver((entries) => {
  if (entries.some((entry) => entry.isIntersecting)) loadMore();
});

export function show() {
  reset();
  shown = true;
  observer.observe(end);
}

export function hide() {
  shown = false;
  observer.disconnect();
}

/** Forget every photo and free its thumbnail (on leaving the view, and on logout). */
export function reset() {
  generation += 1;
  loading = false;
  for (const url of thumbnails.values()) URL.revokeObjectURL(url);
  thumbnails.clear();
  gallery.replaceChildren();
  next = FIRST_PAGE;
  end.textContent = "";
  if (dialog.open) dialog.close();
}

// Photos taken or deleted anywhere (the API, a time-lapse, a trigger) show at once; a
// page that was read before one of them was taken does not add it twice.
stream.on("photo.created", (photo) => { if (shown) addPhoto(photo); });
stream.on("photo.deleted", (photo) => removeCard(photo.id));

/** A photo just taken goes first in the gallery. */
export function addPhoto(photo) {
  if (!shownPhoto(photo.id)) gallery.prepend(card(photo));
}

function shownPhoto(id) {
  return gallery.querySelector(`[data-id="${CSS.escape(id)}"]`) !== null;
}

export async function openPhoto(photo) {
  current = photo;
  document.getElementById("photo-title").textContent = `Photo of ${exactTime(photo.taken_at)}`;
  dialogImage.alt = `The photo taken ${exactTime(photo.taken_at)}`;
  describe(photo);
  document.getElementById("photo-delete").hidden = !isOperator();
  download.removeAttribute("href");
  if (!dialog.open) dialog.showModal();
  try {
    const url = URL.createObjectURL(await fetchBlob(photo.links.image));
    if (current !== photo) {
      URL.revokeObjectURL(url);
      return;
    }
    dialogImage.src = download.href = url;
    download.download = `${photo.id}.${photo.format === "png" ? "png" : "jpg"}`;
  } catch (error) {
    notify(error);
  }
}

async function loadMore() {
  if (loading || !next) return;
  loading = true;
  const mine = generation;
  end.textContent = "Loading…";
  try {
    const page = await request("GET", next);
    if (mine !== generation) return;
    gallery.append(...page.items.filter((photo) => !shownPhoto(photo.id)).map(card));
    next = page.next;
    end.textContent = next ? "" : gallery.children.length ? "No older photos." : "No photos yet.";
  } catch (error) {
    if (mine === generation) end.textContent = "";
    notify(error);
  } finally {
    if (mine === generation) loading = false;
  }
  if (next && mine === generation) {
    // A tall screen may still show the marker, which then never "comes" into view.
    observer.unobserve(end);
    observer.observe(end);
  }
}

function card(photo) {
  const image = el("img", { alt: "", width: 160, height: 120 });
  const item = el("li", { "data-id": photo.id },
    el("button", { type: "button", class: "thumb", onclick: () => openPhoto(photo),
      "aria-label": `Open the photo of ${exactTime(photo.taken_at)}` }, image),
    timeEl(photo.taken_at));
  fetchBlob(photo.links.thumbnail).then((blob) => {
    if (!item.isConnected) return; // removed while it loaded
    const url = URL.createObjectURL(blob);
    thumbnails.set(photo.id, url);
    image.src = url;
  }, () => { image.alt = "(no thumbnail)"; });
  return item;
}

function describe(photo) {
  const settings = photo.settings || {};
  const flips = [settings.hflip && "horizontal", settings.vflip && "vertical"].filter(Boolean);
  facts(document.getElementById("photo-meta"), [
    ["Taken", timeEl(photo.taken_at)],
    ["Size", `${photo.width} × ${photo.height}`],
    ["Format", `${photo.format.toUpperCase()}${settings.quality ? `, quality ${settings.quality}` : ""}`],
    ["File", bytes(photo.bytes)],
    ["Source", photo.trigger ? `${photo.source} (${photo.trigger})` : photo.source],
    ["Time-lapse", photo.timelapse_id && `${photo.timelapse_id}, frame ${photo.sequence}`],
    ["Flipped", flips.length ? flips.join(" and ") : null],
    ...Object.entries(photo.metadata || {}).map(([name, value]) =>
      [name, typeof value === "object" ? JSON.stringify(value) : String(value)]),
  ]);
}

function removeCard(id) {
  gallery.querySelector(`[data-id="${id}"]`)?.remove();
  URL.revokeObjectURL(thumbnails.get(id));
  thumbnails.delete(id);
}

dialog.addEventListener("close", () => {
  if (dialogImage.src) URL.revokeObjectURL(dialogImage.src);
  dialogImage.removeAttribute("src");
  download.removeAttribute("href");
  current = null;
});
document.getElementById("photo-close").addEventListener("click", () => dialog.close());
document.getElementById("photo-delete").addEventListener("click", (event) => act(event.target, async () => {
  if (!current || !confirm("Delete this photo? This cannot be undone.")) return;
  await request("DELETE", current.links.self);
  removeCard(current.id);
  dialog.close();
}));
