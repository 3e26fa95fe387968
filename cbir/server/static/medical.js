"use strict";

// The similar-cases page: an uploaded scan or a stored case, its most and least similar cases, and the vote.

const cases = {
  form: document.getElementById("case-form"),
  file: document.getElementById("case-file"),
  item: document.getElementById("case-item"),
  modality: document.getElementById("case-modality"),
  k: document.getElementById("case-k"),
  exclude: document.getElementById("case-exclude"),
  message: document.getElementById("case-message"),
  query: document.getElementById("case-query"),
  queryPicture: document.getElementById("case-query-picture"),
  queryName: document.getElementById("case-query-name"),
  summary: document.getElementById("case-summary"),
  vote: document.getElementById("case-vote"),
  most: document.getElementById("case-most"),
  least: document.getElementById("case-least"),
  template: document.getElementById("case-template"),
};

function caseMessage(text) {
  cases.message.textContent = text || "";
  cases.message.hidden = !text;
}

function caseCard(hit, queryLabel) {
  const node = cases.template.content.firstElementChild.cloneNode(true);
  const image = node.querySelector("img");
  image.src = hit.picture;
  image.alt = hit.name;
  node.querySelector(".case-score").textContent = `similarity ${hit.score.toFixed(3)}`;
  node.querySelector(".case-label").textContent = hit.label === null ? "no label" : `label ${hit.label}`;
  node.querySelector(".case-name").textContent = hit.name;
  if (queryLabel !== null && hit.label !== null) node.classList.add(hit.label === queryLabel ? "match" : "mismatch");
  node.dataset.itemId = hit.item_id;
  node.querySelector("button").addEventListener("click", () => {
    location.hash = `item=${hit.item_id}`;
  });
  return node;
}

function showCases(report) {
  const query = report.query;
  cases.query.hidden = false;
  cases.queryPicture.src = query.picture;
  cases.queryName.textContent = query.name;
  const modality = query.modality || "unknown modality";
  cases.summary.textContent = `${report.candidates} candidate cases (${modality}, ${query.kind} items)` +
    (query.label !== null ? ` · label ${query.label}` : "");
  const votes = Object.entries(report.vote).sort((a, b) => b[1] - a[1]).map(([label, count]) => `${label}: ${count}`);
  cases.vote.textContent = votes.length
    ? `Vote of the ${report.most_similar.length} most similar: ${votes.join(", ")}`
    : "The most similar cases carry no labels to vote with.";
  cases.most.replaceChildren(...report.most_similar.map((hit) => caseCard(hit, query.label)));
  cases.least.replaceChildren(...report.least_similar.map((hit) => caseCard(hit, query.label)));
}

async function findCases(fields) {
  caseMessage("");
  const form = new FormData();
  for (const [key, value] of Object.entries(fields)) form.append(key, value);
  form.append("k", cases.k.value);
  form.append("exclude_same_patient", cases.exclude.checked ? "true" : "false");
  if (cases.modality.value.trim()) form.append("modality", cases.modality.value.trim());
  try {
    const response = await fetch("/medical/similar", {method: "POST", body: form});
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || `the server answered ${response.status}`);
    showCases(body);
  } catch (error) {
    caseMessage(error.message);
  }
}

function itemInHash() {
  const match = /^#item=(\d+)$/.exec(location.hash);
  return match ? Number(match[1]) : null;
}

cases.form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (cases.file.files.length) {
    findCases({image: cases.file.files[0]});
  } else if (cases.item.value) {
    location.hash = `item=${cases.item.value}`;
  } else {
    caseMessage("Choose a scan or give an item id.");
  }
});

window.addEventListener("hashchange", () => {
  const itemId = itemInHash();
  if (itemId !== null) {
    cases.item.value = itemId;
    findCases({item_id: itemId});
  }
});

if (itemInHash() !== null) window.dispatchEvent(new HashChangeEvent("hashchange"));
