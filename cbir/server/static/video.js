"use strict";

// Videos on the search page: the moments of videos that show the query photo, the videos that hold an
// uploaded clip, and a player that starts at the chosen moment (the file is served with range requests;
// a #t=start,end fragment makes the browser fetch and play from there).

const VIDEO_KINDS = new Set(["frame", "shot"]);
const CLIP_SUFFIXES = /\.(mp4|m4v|mov|mkv|webm|avi|mpg|mpeg|ts|wmv|flv|3gp|ogv)$/i;

const videoPage = {
  section: document.getElementById("moments"),
  title: document.getElementById("moments-title"),
  status: document.getElementById("moments-status"),
  list: document.getElementById("moments-list"),
  playerBox: document.getElementById("player-box"),
  player: document.getElementById("player"),
  playing: document.getElementById("player-caption"),
  photoKinds: null, // the kinds a photo query ranks as photos when the collection holds videos; null: no videos
  running: null,
};

async function loadVideoKinds() {
  const response = await fetch("/info");
  if (!response.ok) return;
  const kinds = Object.keys((await response.json()).by_kind || {});
  if (kinds.some((kind) => VIDEO_KINDS.has(kind))) {
    const photos = kinds.filter((kind) => !VIDEO_KINDS.has(kind));
    videoPage.photoKinds = photos.length ? photos : ["image"];
  }
}

const videoKindsLoaded = loadVideoKinds().catch(() => {});

function clock(seconds) {
  const minutes = Math.floor(seconds / 60);
  return `${minutes}:${(seconds - minutes * 60).toFixed(1).padStart(4, "0")}`;
}

async function postForm(path, form, signal) {
  let response;
  try {
    response = await fetch(path, {method: "POST", body: form, signal});
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error("The server cannot be reached. Is it still running?");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error((body && body.detail) || `The server answered ${response.status}.`);
  return body;
}

function play(hit, caption) {
  const fragment = `#t=${hit.t_start.toFixed(2)},${hit.t_end.toFixed(2)}`;
  videoPage.playerBox.hidden = false;
  videoPage.player.src = hit.file + fragment;
  videoPage.player.dataset.itemId = hit.item_id;
  videoPage.playing.textContent = caption;
  for (const node of videoPage.list.children) node.classList.toggle("playing", node.dataset.itemId === String(hit.item_id));
  videoPage.player.play().catch(() => {}); // a browser may refuse to start on its own; the controls remain
}

function momentCard(hit, caption) {
  const node = document.createElement("li");
  node.className = "moment";
  node.dataset.itemId = hit.item_id;
  node.dataset.tStart = hit.t_start;
  const strip = document.createElement("button");
  strip.type = "button";
  strip.className = "strip";
  strip.title = `Play from ${clock(hit.t_start)}`;
  for (const url of hit.strip) {
    const image = document.createElement("img");
    image.src = url;
    image.alt = "";
    image.loading = "lazy";
    strip.append(image);
  }
  strip.addEventListener("click", () => play(hit, caption));
  const text = document.createElement("div");
  text.className = "moment-caption";
  text.textContent = caption;
  text.title = hit.uri;
  node.append(strip, text);
  return node;
}

function showVideoHits(title, hits, describe) {
  videoPage.section.hidden = false;
  videoPage.title.textContent = title;
  videoPage.status.textContent = hits.length ? "" : "No video matches.";
  videoPage.list.replaceChildren(...hits.map((hit) => momentCard(hit, describe(hit))));
}

function baseNameOf(uri) {
  return uri.split(/[\\/]/).pop() || uri;
}

// The moments of the collection's videos that show `file` (nothing for a collection without videos).
async function showMoments(file, k) {
  await videoKindsLoaded;
  if (videoPage.running) videoPage.running.abort();
  if (!file || videoPage.photoKinds === null) {
    videoPage.section.hidden = true;
    return;
  }
  const controller = new AbortController();
  videoPage.running = controller;
  const form = new FormData();
  form.append("image", file, file.name || "query");
  form.append("k", String(Math.min(k, 24)));
  try {
    const body = await postForm("/video/moments", form, controller.signal);
    showVideoHits("Moments in videos", body.moments, (hit) =>
      `#${hit.rank} · ${hit.score.toFixed(3)} · ${baseNameOf(hit.uri)} · ${clock(hit.t_start)}–${clock(hit.t_end)}`);
  } catch (error) {
    if (error.name === "AbortError") return;
    showVideoHits("Moments in videos", [], () => "");
    videoPage.status.textContent = error.message;
  }
}

// The videos that hold an uploaded clip, with the aligned segment in each.
async function searchClip(file) {
  await videoKindsLoaded;
  if (videoPage.running) videoPage.running.abort();
  const controller = new AbortController();
  videoPage.running = controller;
  videoPage.section.hidden = false;
  videoPage.title.textContent = `Videos holding ${file.name}`;
  videoPage.status.textContent = "Reading the clip…";
  videoPage.list.replaceChildren();
  document.getElementById("results").replaceChildren();
  document.getElementById("results-title").textContent = `Videos holding ${file.name}`;
  document.getElementById("empty").hidden = true;
  const form = new FormData();
  form.append("clip", file, file.name || "clip");
  try {
    const body = await postForm("/video/clip", form, controller.signal);
    showVideoHits(`Videos holding ${file.name}`, body.results, (hit) =>
      `#${hit.rank} · ${hit.score.toFixed(3)} · ${baseNameOf(hit.uri)} · ${clock(hit.t_start)}–${clock(hit.t_end)}` +
      ` (clip ${clock(hit.query_t_start)}–${clock(hit.query_t_end)})`);
  } catch (error) {
    if (error.name !== "AbortError") videoPage.status.textContent = `${file.name}: ${error.message}`;
  }
}

window.cbirVideo = {
  isClip: (file) => file.type.startsWith("video/") || CLIP_SUFFIXES.test(file.name || ""),
  searchClip,
  showMoments,
  // A photo query without a kind filter ranks photos; frames come back as moments.
  addPhotoKinds(form) {
    for (const kind of videoPage.photoKinds || []) form.append("kind", kind);
  },
};
