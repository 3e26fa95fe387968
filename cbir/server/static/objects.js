"use strict";

// Object search on the page (beside app.js, whose state, search and drawing it uses): draw a box on an
// uploaded query to search that part; chips for the objects detected in it, to search each; a class
// filter, which lists every object of the class when there is no query picture.

const objectSearch = {
  chips: document.createElement("div"),
  classSelect: null,
  detectedFor: null, // the File whose objects the chips show
  drag: null, // the box being drawn: {img, rect, x, y, outline}
  dragged: false, // a box was just drawn: the click that ends it must not open the file chooser
};

objectSearch.chips.id = "object-chips";
objectSearch.chips.className = "object-chips";
objectSearch.chips.hidden = true;
elements.caption.after(objectSearch.chips);

function roundedBox(box) {
  return box.map((value) => Math.round(value));
}

// Search with one part of an uploaded picture; the preview then shows the part outlined.
function searchPart(file, box, name) {
  const query = {
    file,
    box,
    endpoint: "/objects/search",
    fields: {box: roundedBox(box).join(",")},
    title: `${name || "the part"} of ${file.name}`,
  };
  search(query, () => {
    previewFile(file);
    outlineQuery(box);
  });
}

function outlineQuery(box) {
  const frame = elements.preview.querySelector(".frame");
  const image = frame && frame.querySelector("img");
  if (!image) return;
  image.decode().then(() => drawBox(frame, box, [image.naturalWidth, image.naturalHeight])).catch(() => {});
}

// --- chips: the objects of the query ---------------------------------------------------

async function showObjects(file) {
  if (objectSearch.detectedFor === file) return;
  objectSearch.detectedFor = file;
  objectSearch.chips.replaceChildren();
  objectSearch.chips.hidden = true;
  const form = new FormData();
  form.append("image", file, file.name || "query");
  try {
    const {body} = await api("/objects/detect", {method: "POST", body: form});
    if (objectSearch.detectedFor !== file) return;
    for (const found of body.objects) {
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "label-chip object-chip";
      chip.textContent = `${found.label} ${found.detector_score.toFixed(2)}`;
      chip.title = `Search with the ${found.label} at ${roundedBox(found.box).join(", ")}`;
      chip.addEventListener("click", () => searchPart(file, found.box, found.label));
      objectSearch.chips.append(chip);
    }
    const hint = document.createElement("span");
    hint.className = "object-hint";
    hint.textContent = body.objects.length
      ? "Objects found: click one to search with it, or draw a box on the picture."
      : "No object found: draw a box on the picture to search with a part.";
    objectSearch.chips.prepend(hint);
    objectSearch.chips.hidden = false;
  } catch (error) {
    showMessage(`Finding the objects of ${file.name}: ${error.message}`);
  }
}

document.addEventListener("cbir:searched", (event) => {
  const {query} = event.detail;
  if (query.file) showObjects(query.file);
  else {
    objectSearch.detectedFor = null;
    objectSearch.chips.hidden = true;
  }
});

// --- drawing a box on the query ----------------------------------------------------------

function pointerBox(drag, event) {
  const clamp = (value, low, high) => Math.max(low, Math.min(high, value));
  const x = clamp(event.clientX, drag.rect.left, drag.rect.right);
  const y = clamp(event.clientY, drag.rect.top, drag.rect.bottom);
  return [Math.min(drag.x, x), Math.min(drag.y, y), Math.max(drag.x, x), Math.max(drag.y, y)];
}

elements.preview.addEventListener("pointerdown", (event) => {
  const image = elements.preview.querySelector("img");
  if (!image || !state.query || !state.query.file || event.button !== 0) return;
  event.preventDefault();
  const rect = image.getBoundingClientRect();
  objectSearch.drag = {image, rect, x: event.clientX, y: event.clientY, outline: null};
  elements.preview.setPointerCapture(event.pointerId);
});

elements.preview.addEventListener("pointermove", (event) => {
  const drag = objectSearch.drag;
  if (!drag) return;
  const [x0, y0, x1, y1] = pointerBox(drag, event);
  if (!drag.outline) {
    drag.outline = document.createElement("span");
    drag.outline.className = "box drawing";
    drag.image.parentElement.append(drag.outline);
  }
  Object.assign(drag.outline.style, {
    left: `${(100 * (x0 - drag.rect.left)) / drag.rect.width}%`,
    top: `${(100 * (y0 - drag.rect.top)) / drag.rect.height}%`,
    width: `${(100 * (x1 - x0)) / drag.rect.width}%`,
    height: `${(100 * (y1 - y0)) / drag.rect.height}%`,
  });
});

elements.preview.addEventListener("pointerup", (event) => {
  const drag = objectSearch.drag;
  objectSearch.drag = null;
  if (!drag) return;
  const [x0, y0, x1, y1] = pointerBox(drag, event);
  if (drag.outline) drag.outline.remove();
  if (x1 - x0 < 4 || y1 - y0 < 4) return; // a click, not a box
  objectSearch.dragged = true;
  const scaleX = drag.image.naturalWidth / drag.rect.width;
  const scaleY = drag.image.naturalHeight / drag.rect.height;
  const box = [(x0 - drag.rect.left) * scaleX, (y0 - drag.rect.top) * scaleY, (x1 - drag.rect.left) * scaleX, (y1 - drag.rect.top) * scaleY];
  searchPart(state.query.file, box, null);
});

elements.preview.addEventListener("click", (event) => {
  if (!objectSearch.dragged) return;
  objectSearch.dragged = false;
  event.stopPropagation();
});

// --- the class filter ----------------------------------------------------------------------

function everyObjectQuery() {
  return {endpoint: "/objects/label", everyObject: true, get title() { return `every ${elements.label.value.trim()}`; }};
}

async function loadClasses() {
  try {
    const {body} = await api("/objects/classes");
    if (!body.classes.length) return;
    const select = document.createElement("select");
    select.id = "object-class";
    select.append(new Option("Any class", ""), ...body.classes.map((name) => new Option(name, name)));
    const label = document.createElement("label");
    label.append("Object class", select);
    elements.label.closest("label").after(label);
    objectSearch.classSelect = select;
    select.addEventListener("change", () => {
      elements.label.value = select.value;
      if (select.value && (!state.query || state.query.everyObject)) search(everyObjectQuery(), null, 1);
      else newSearch();
    });
  } catch (error) {
    showMessage(error.message);
  }
}

loadClasses();
