"use strict";

// The search page: a query (an uploaded picture or a collection item), filters, and a grid of results.

const elements = {
  info: document.getElementById("collection-info"),
  dropzone: document.getElementById("dropzone"),
  hint: document.getElementById("dropzone-hint"),
  preview: document.getElementById("query-preview"),
  caption: document.getElementById("query-caption"),
  fileInput: document.getElementById("file-input"),
  filters: document.getElementById("filters"),
  kind: document.getElementById("kind"),
  label: document.getElementById("label"),
  k: document.getElementById("k"),
  title: document.getElementById("results-title"),
  status: document.getElementById("status"),
  message: document.getElementById("message"),
  empty: document.getElementById("empty"),
  grid: document.getElementById("results"),
  more: document.getElementById("more"),
  limitNote: document.getElementById("limit-note"),
  overlay: document.getElementById("drop-overlay"),
  template: document.getElementById("card-template"),
};

// The page shows one query at a time: `state.query` with its preview, heading and cards. A new query
// replaces them only once its search succeeds; a failed one leaves them as they were, with a message.
const state = {
  query: null, // {file: File} or {itemId: number, name?: string}
  pages: 1, // how many times the "Results" count is asked for ("More results" adds one)
  limits: {maxUploadBytes: Infinity, maxK: 200},
  running: null, // AbortController of the search in flight
  previewUrl: null,
};

const itemDetails = new Map(); // item id -> promise of GET /items/{id}
const uploads = new Map(); // upload number (in its history entry's state) -> File, for Back and Forward
const KEPT_UPLOADS = 50;

class ApiError extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError("The server cannot be reached. Is it still running?");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError((body && body.detail) || `The server answered ${response.status} ${response.statusText}.`);
  }
  return {body, response};
}

function details(itemId) {
  if (!itemDetails.has(itemId)) {
    const request = api(`/items/${itemId}`).then(({body}) => body);
    request.catch(() => itemDetails.delete(itemId));
    itemDetails.set(itemId, request);
  }
  return itemDetails.get(itemId);
}

function baseName(uri) {
  return uri.split(/[\\/]/).pop() || uri;
}

function formatSeconds(seconds) {
  const minutes = Math.floor(seconds / 60);
  const rest = (seconds - minutes * 60).toFixed(1).padStart(4, "0");
  return minutes ? `${minutes}:${rest}` : `${rest} s`;
}

function showMessage(text) {
  elements.message.textContent = text;
  elements.message.hidden = !text;
}

// --- collection info and filters ---------------------------------------------

const POOLING_NAMES = {spoc: "SPoC", mac: "MAC", gem: "GeM", rmac: "R-MAC", crow: "CroW"};

async function loadInfo() {
  try {
    const {body: info} = await api("/info");
    const encoder = info.encoder || {};
    const image = (info.spaces || {}).image || {};
    const parts = [`${info.items.toLocaleString()} items`];
    if (encoder.backbone) parts.push(`${encoder.backbone} · ${POOLING_NAMES[encoder.pooling] || encoder.pooling}`);
    if (image.dim) parts.push(`${image.dim}-d${image.whitening ? ", whitened" : ""}`);
    elements.info.textContent = parts.join(" · ");
    for (const [kind, count] of Object.entries(info.by_kind || {})) {
      const option = new Option(`${kind} (${count.toLocaleString()})`, kind);
      elements.kind.append(option);
    }
    state.limits = {maxUploadBytes: info.server.max_upload_bytes, maxK: info.server.max_k};
    document.getElementById("medical-link").hidden = !(info.spaces || {}).medical;
    elements.empty.querySelector("p").textContent =
      `Choose or drop a picture to find the most similar of ${info.items.toLocaleString()} items.`;
  } catch (error) {
    elements.info.textContent = "Collection unavailable";
    showMessage(error.message);
  }
}

// --- the query -----------------------------------------------------------------

function frameFor(src, alt) {
  const frame = document.createElement("span");
  frame.className = "frame";
  const image = document.createElement("img");
  image.src = src;
  image.alt = alt;
  image.addEventListener("error", () => image.classList.add("broken"), {once: true});
  frame.append(image);
  return frame;
}

// Outline a face or region: the box is in pixels of the source picture, the frame in percent of it.
function drawBox(frame, box, imageSize) {
  if (!box || !imageSize) return;
  const [width, height] = imageSize;
  const outline = document.createElement("span");
  outline.className = "box";
  outline.style.left = `${(100 * box[0]) / width}%`;
  outline.style.top = `${(100 * box[1]) / height}%`;
  outline.style.width = `${(100 * (box[2] - box[0])) / width}%`;
  outline.style.height = `${(100 * (box[3] - box[1])) / height}%`;
  frame.append(outline);
}

function setPreview(frame, caption) {
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  elements.preview.replaceChildren(frame);
  elements.preview.hidden = false;
  elements.hint.hidden = true;
  elements.caption.textContent = caption;
}

function previewFile(file) {
  const url = URL.createObjectURL(file);
  setPreview(frameFor(url, file.name), `${file.name} · ${(file.size / 1024).toFixed(0)} KB`);
  state.previewUrl = url;
}

// `fromHistory`: the Back or Forward button brought this upload back; the history already has its entry.
function useFile(file, {fromHistory = false} = {}) {
  if (!file) return;
  if (window.cbirVideo && window.cbirVideo.isClip(file)) return window.cbirVideo.searchClip(file);
  if (!file.type.startsWith("image/") && file.type !== "") {
    showMessage(`${file.name} is not an image.`);
    return;
  }
  if (file.size > state.limits.maxUploadBytes) {
    const limit = (state.limits.maxUploadBytes / 1048576).toFixed(1);
    showMessage(`${file.name} is ${(file.size / 1048576).toFixed(1)} MiB; the server accepts at most ${limit} MiB.`);
    return;
  }
  search({file}, () => {
    previewFile(file);
    if (fromHistory) return;
    // Each uploaded query gets its own history entry, so Back returns to it from a result clicked later.
    const number = uploads.size ? Math.max(...uploads.keys()) + 1 : 1;
    uploads.set(number, file);
    if (uploads.size > KEPT_UPLOADS) uploads.delete(Math.min(...uploads.keys()));
    history.pushState({upload: number}, "", location.pathname);
  });
}

function useItem(itemId) {
  search({itemId}, async (query) => {
    elements.caption.textContent = `Item ${itemId}`;
    try {
      const item = await details(itemId);
      if (state.query !== query) return;
      query.name = item.name;
      const frame = frameFor(item.thumbnail, item.name);
      drawBox(frame, item.box, item.image_size);
      setPreview(frame, `Item ${itemId} · ${item.kind} · ${item.name}`);
      describeResults();
    } catch (error) {
      showMessage(error.message);
    }
  });
}

function itemFromHash() {
  const match = /^#item=(\d+)$/.exec(location.hash);
  return match ? Number(match[1]) : null;
}

// --- searching -------------------------------------------------------------------

function describeQuery(query) {
  if (query.title) return query.title;
  if (query.file) return query.file.name;
  return query.name ? `${query.name} (item ${query.itemId})` : `item ${query.itemId}`;
}

function requestedK(pages) {
  return Math.min(Number(elements.k.value) * pages, state.limits.maxK);
}

// Search with `query` (default: the current one, e.g. after a filter changed). A new query, or more
// pages of the current one, replace what the page shows only on success; `accepted(query)` then runs.
async function search(query = state.query, accepted = null, pages = query === state.query ? state.pages : 1) {
  if (!query) return;
  if (state.running) state.running.abort();
  const controller = new AbortController();
  state.running = controller;

  const k = requestedK(pages);
  const form = new FormData();
  if (query.file) form.append("image", query.file, query.file.name || "query");
  else if (query.itemId != null) form.append("item_id", String(query.itemId));
  for (const [key, value] of Object.entries(query.fields || {})) form.append(key, value);
  form.append("k", String(k));
  if (elements.kind.value) form.append("kind", elements.kind.value);
  else if (window.cbirVideo) window.cbirVideo.addPhotoKinds(form);
  if (elements.label.value.trim()) form.append("label", elements.label.value.trim());

  showMessage("");
  elements.grid.classList.add("busy");
  const shownStatus = elements.status.textContent;
  elements.status.textContent = "Searching…";
  const started = performance.now();
  try {
    const {body} = await api(query.endpoint || "/search", {method: "POST", body: form, signal: controller.signal});
    if (controller !== state.running) return;
    const sameQuery = query === state.query;
    state.query = query;
    state.pages = pages;
    if (accepted) accepted(query);
    render(body.results, k, performance.now() - started, sameQuery);
    document.dispatchEvent(new CustomEvent("cbir:searched", {detail: {query}}));
    if (window.cbirVideo) window.cbirVideo.showMoments(query.file || null, k);
  } catch (error) {
    if (error.name === "AbortError") return;
    elements.status.textContent = shownStatus;
    const kept = state.query && query !== state.query ? ` Still showing the results for ${describeQuery(state.query)}.` : "";
    showMessage(query === state.query ? error.message : `${describeQuery(query)}: ${error.message}${kept}`);
  } finally {
    if (controller === state.running) {
      state.running = null;
      elements.grid.classList.remove("busy");
    }
  }
}

// "name.jpg", or "folder/name.jpg" when other files of that name are among the results.
function shownName(uri, repeated) {
  if (!repeated) return baseName(uri);
  const parts = uri.split(/[\\/]/).filter(Boolean);
  return parts.slice(-2).join("/");
}

function repeatedNames(results) {
  const uris = new Map(); // base name -> distinct uris
  for (const hit of results) {
    const name = baseName(hit.uri);
    if (!uris.has(name)) uris.set(name, new Set());
    uris.get(name).add(hit.uri);
  }
  return new Set([...uris].filter(([, distinct]) => distinct.size > 1).map(([name]) => name));
}

function card(hit, repeated) {
  const node = elements.template.content.firstElementChild.cloneNode(true);
  const name = shownName(hit.uri, repeated.has(baseName(hit.uri)));
  node.dataset.itemId = hit.item_id;
  node.dataset.rank = hit.rank;
  if (hit.rank === 1) node.classList.add("top");

  const frame = frameFor(`/items/${hit.item_id}/thumbnail`, name);
  node.querySelector(".frame").replaceWith(frame);
  node.querySelector(".thumb").addEventListener("click", () => {
    if (itemFromHash() === hit.item_id) useItem(hit.item_id);
    else location.hash = `item=${hit.item_id}`;
  });
  if (hit.box) {
    details(hit.item_id).then((item) => drawBox(frame, hit.box, item.image_size)).catch(() => {});
  }

  node.querySelector(".rank").textContent = `#${hit.rank}`;
  const kind = node.querySelector(".kind");
  kind.textContent = hit.kind;
  kind.classList.add(`kind-${hit.kind}`);
  node.querySelector(".score").textContent = hit.score.toFixed(3);
  node.querySelector(".scorebar span").style.width = `${Math.max(0, Math.min(1, hit.score)) * 100}%`;

  const nameNode = node.querySelector(".name");
  nameNode.textContent = hit.t_start != null ? `${name} @ ${formatSeconds(hit.t_start)}` : name;
  nameNode.title = hit.uri;

  const labels = node.querySelector(".labels");
  for (const label of hit.labels || []) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "label-chip";
    chip.textContent = label;
    chip.title = `Only items labelled ${label}`;
    chip.addEventListener("click", () => {
      elements.label.value = label;
      newSearch();
    });
    labels.append(chip);
  }

  const original = node.querySelector(".original");
  original.href = `/items/${hit.item_id}/file`;
  original.title = `Open ${name}`;
  return node;
}

function describeResults() {
  const described = describeQuery(state.query);
  const found = elements.grid.children.length > 0;
  elements.title.textContent = found ? `Most similar to ${described}` : `Nothing matches ${described}`;
}

function sameHits(cards, results) {
  return cards.every((node, position) => results[position] && Number(node.dataset.itemId) === results[position].item_id);
}

// `sameQuery`: the cards already shown stay (and keep their scroll position) when the new results extend them.
function render(results, k, milliseconds, sameQuery) {
  elements.empty.hidden = true;
  const repeated = repeatedNames(results);
  const shown = [...elements.grid.children];
  const extending = sameQuery && shown.length < results.length && sameHits(shown, results);
  const namesStay = extending && shown.every((node) => !repeated.has(baseName(node.querySelector(".name").title)));
  if (namesStay) elements.grid.append(...results.slice(shown.length).map((hit) => card(hit, repeated)));
  else elements.grid.replaceChildren(...results.map((hit) => card(hit, repeated)));
  describeResults();
  elements.status.textContent = `${results.length} result${results.length === 1 ? "" : "s"} · ${Math.round(milliseconds)} ms`;
  const full = results.length === k;
  elements.more.hidden = !(full && k < state.limits.maxK);
  elements.limitNote.hidden = !(full && k >= state.limits.maxK);
  elements.limitNote.textContent = `This server returns at most ${state.limits.maxK} results; narrow the search with the filters.`;
  if (results.length) return;
  const filtered = elements.kind.value || elements.label.value.trim();
  showMessage(filtered ? "No item passes the filters. Clear the kind or label filter to see more." : "The collection has no items to compare with yet.");
}

// --- events ----------------------------------------------------------------------

function firstImage(items) {
  for (const item of items || []) {
    const file = item.getAsFile ? (item.kind === "file" ? item.getAsFile() : null) : item;
    if (file) return file;
  }
  return null;
}

elements.dropzone.addEventListener("click", () => elements.fileInput.click());
elements.dropzone.addEventListener("keydown", (event) => {
  if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    elements.fileInput.click();
  }
});
elements.fileInput.addEventListener("change", () => {
  useFile(elements.fileInput.files[0]);
  elements.fileInput.value = "";
});

let dragDepth = 0;
window.addEventListener("dragenter", (event) => {
  if (!event.dataTransfer || !Array.from(event.dataTransfer.types).includes("Files")) return;
  dragDepth += 1;
  elements.overlay.hidden = false;
  elements.dropzone.classList.add("dragging");
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) {
    elements.overlay.hidden = true;
    elements.dropzone.classList.remove("dragging");
  }
});
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  elements.overlay.hidden = true;
  elements.dropzone.classList.remove("dragging");
  useFile(firstImage(event.dataTransfer && event.dataTransfer.files));
});
window.addEventListener("paste", (event) => {
  const file = firstImage(event.clipboardData && event.clipboardData.items);
  if (file) useFile(file);
});

// A changed filter or page size starts again from the first page.
function newSearch() {
  if (state.query) search(state.query, null, 1);
}

elements.filters.addEventListener("submit", (event) => {
  event.preventDefault();
  newSearch();
});
elements.kind.addEventListener("change", newSearch);
elements.k.addEventListener("change", newSearch);
elements.label.addEventListener("change", newSearch);
elements.more.addEventListener("click", () => search(state.query, null, state.pages + 1));

window.addEventListener("hashchange", () => {
  const itemId = itemFromHash();
  if (itemId) useItem(itemId);
});
window.addEventListener("popstate", (event) => {
  const file = event.state && uploads.get(event.state.upload);
  if (itemFromHash() === null && file) useFile(file, {fromHistory: true});
});

loadInfo().then(() => {
  const itemId = itemFromHash();
  if (itemId) useItem(itemId);
});
