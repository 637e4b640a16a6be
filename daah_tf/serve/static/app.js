// The search page: plain DOM code, no build step, nothing loaded from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const apiKey = () => new URLSearchParams(location.search).get("api_key");

async function call(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (apiKey()) headers["X-API-Key"] = apiKey();
  const response = await fetch(path, Object.assign({}, options, { headers }));
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function text(tag, className, value) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  node.textContent = value;
  return node;
}

function thumbnailUrl(hit) {
  const key = apiKey() ? `&api_key=${encodeURIComponent(apiKey())}` : "";
  return `${hit.thumbnail}?size=160${key}`;
}

function showGrid(result) {
  const grid = document.createElement("div");
  grid.id = "grid";
  for (const hit of result.hits) {
    const card = document.createElement("figure");
    card.className = "hit";
    card.dataset.id = hit.id;
    if (hit.thumbnail) {
      const img = document.createElement("img");
      img.src = thumbnailUrl(hit);
      img.alt = hit.text || `item ${hit.id}`;
      card.appendChild(img);
    } else {
      card.appendChild(text("div", "muted", "no thumbnail"));
    }
    const caption = document.createElement("figcaption");
    caption.appendChild(text("div", "dist", `#${hit.rank} · distance ${hit.distance}`));
    caption.appendChild(text("div", "caption", hit.text || hit.image || `item ${hit.id}`));
    caption.appendChild(text("div", "labels", hit.labels.join(", ")));
    card.appendChild(caption);
    grid.appendChild(card);
  }
  return grid;
}

function showCaptions(result) {
  const list = document.createElement("ol");
  list.className = "captions";
  list.id = "captions";
  for (const hit of result.hits) {
    const item = text("li", "", `${hit.text || `item ${hit.id}`}  `);
    item.dataset.id = hit.id;
    item.appendChild(text("span", "labels",
      `(distance ${hit.distance}${hit.labels.length ? "; " + hit.labels.join(", ") : ""})`));
    list.appendChild(item);
  }
  return list;
}

function render(result, view) {
  const results = $("results");
  results.replaceChildren(view(result));
  $("status").className = "muted";
  $("status").textContent = `${result.hits.length} hits for ${result.query_modality} ` +
    `"${result.query}" among ${result.index_items} ${result.target}s ` +
    `(${result.bits} bits, ${result.took_ms.toFixed(1)} ms)`;
}

function fail(error) {
  $("status").className = "error";
  $("status").textContent = error.message;
  $("results").replaceChildren();
}

function k() {
  return Math.max(1, Math.min(100, parseInt($("k").value, 10) || 10));
}

$("text-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("status").className = "muted";
  $("status").textContent = "searching…";
  try {
    const body = JSON.stringify({ text: $("query").value, k: k(), target: "image" });
    render(await call("/v1/search/text", {
      method: "POST", headers: { "Content-Type": "application/json" }, body }), showGrid);
  } catch (error) { fail(error); }
});

async function searchImage(file) {
  if (!file) return;
  $("status").className = "muted";
  $("status").textContent = `searching with ${file.name}…`;
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    render(await call(`/v1/search/image?k=${k()}&target=text`, { method: "POST", body: form }),
      showCaptions);
  } catch (error) { fail(error); }
}

const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  searchImage(event.dataTransfer.files[0]);
});
$("file").addEventListener("change", (event) => searchImage(event.target.files[0]));

call("/v1/info").then((info) => {
  $("info").textContent = `${info.dataset} · ${info.bits}-bit codes · ` +
    `${info.index_items.image} images, ${info.index_items.text} texts`;
  if (!info.takes_raw_text) $("text-form").querySelector("button").disabled = true;
}).catch(fail);
