// The search page: text, a dropped or chosen file, or "more like this" as the query; results as a grid.
// Plain DOM code, no framework and nothing fetched from elsewhere. Everything from the server is shown with
// textContent or as URLs, never parsed as HTML (file names and metadata are data, not markup).
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { file: null, fileUrl: null, like: null };
let searchSeq = 0;          // a slower, older answer must not overwrite a newer one
let sliderTimer = null;

function modalities() {
  return [...document.querySelectorAll(".modality:checked")].map((el) => el.value);
}

function minScore() {
  const v = parseFloat($("#min-score").value);
  return v <= parseFloat($("#min-score").min) ? null : v;   // the far left means "no minimum"
}

function hasQuery() {
  return $("#q").value.trim() !== "" || state.file !== null || state.like !== null;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) {
    $("#key-form").hidden = false;
    $("#key").focus();
    throw new Error("this server needs its API key");
  }
  const body = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const d = body?.detail;
    throw new Error(typeof d === "string" ? d : d?.message || `HTTP ${response.status}`);
  }
  return body;
}

async function search() {
  if (!hasQuery()) {
    showStatus("");
    $("#results").replaceChildren();
    return;
  }
  const seq = ++searchSeq;
  const k = parseInt($("#k").value, 10);
  const mods = modalities();
  const text = $("#q").value.trim();
  let request;
  if (state.file) {
    const form = new FormData();
    form.append("file", state.file, state.file.name);
    if (text) form.append("text", text);
    if (state.like) form.append("like", state.like.id);
    form.append("k", String(k));
    form.append("modalities", mods.join(","));
    if (minScore() !== null) form.append("min_score", String(minScore()));
    request = api("search/upload", { method: "POST", body: form });
  } else {
    const body = { k, modalities: mods, min_score: minScore() };
    if (text) body.text = text;
    if (state.like) body.like = state.like.id;
    request = api("search", { method: "POST", headers: { "Content-Type": "application/json" },
                              body: JSON.stringify(body) });
  }
  showStatus("searching…");
  try {
    const result = await request;
    if (seq !== searchSeq) return;
    render(result.hits);
    const n = result.hits.length;
    showStatus(n ? `${n} result${n > 1 ? "s" : ""} in ${Math.round(result.took_ms)} ms`
                 : "no results (try a lower minimum score, or other filters)");
  } catch (err) {
    if (seq !== searchSeq) return;
    showStatus(err.message, true);
  }
}

function showStatus(message, isError = false) {
  const el = $("#status");
  el.textContent = message;
  el.className = isError ? "error" : "muted";
}

function fileName(hit) {
  const p = hit.paths?.[0] || hit.id;
  return p.split(/[\\/]/).pop();
}

function seconds(t) {
  return `${t.toFixed(1)} s`;
}

function mediaElement(hit) {
  if (hit.modality === "image") {
    const img = document.createElement("img");
    img.src = `${hit.thumbnail}?size=256`;
    img.alt = fileName(hit);
    img.loading = "lazy";
    return img;
  }
  if (hit.modality === "video" || hit.modality === "audio") {
    const el = document.createElement(hit.modality);
    // Videos show their frame until pointed at (controls on a grid of players hide the pictures); sounds have
    // nothing else to show.
    el.controls = hit.modality === "audio";
    if (hit.modality === "video") {
      el.addEventListener("mouseenter", () => { el.controls = true; });
      el.addEventListener("focus", () => { el.controls = true; });
      el.tabIndex = 0;
    }
    el.preload = "metadata";
    const start = hit.start ?? 0;
    // A media fragment starts playback at the matching segment; currentTime covers players that ignore it.
    el.src = hit.start != null ? `${hit.media}#t=${hit.start},${hit.end}` : hit.media;
    el.dataset.start = String(start);
    el.addEventListener("loadedmetadata", () => {
      if (Math.abs(el.currentTime - start) > 0.25) el.currentTime = start;
    }, { once: true });
    if (hit.modality === "video" && hit.thumbnail) el.poster = `${hit.thumbnail}?size=256&t=${start}`;
    return el;
  }
  const pre = document.createElement("pre");     // a text item: its first lines
  fetch(hit.media, { credentials: "same-origin" })
    .then((r) => (r.ok ? r.text() : ""))
    .then((t) => { pre.textContent = t.slice(0, 400); });
  return pre;
}

function render(hits) {
  const template = $("#hit-template");
  const cards = hits.map((hit) => {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.id = hit.id;
    card.dataset.score = String(hit.score);
    card.dataset.modality = hit.modality;
    card.querySelector(".media").append(mediaElement(hit));
    card.querySelector(".score").textContent = hit.score.toFixed(3);
    card.querySelector(".name").textContent = fileName(hit);
    card.querySelector(".name").title = hit.paths?.[0] || "";
    if (hit.start != null) {
      card.querySelector(".segment").textContent = `▶ ${seconds(hit.start)}–${seconds(hit.end)}`;
    }
    card.querySelector(".more").addEventListener("click", () => {
      state.like = { id: hit.id, name: fileName(hit), thumbnail: hit.thumbnail };
      clearFile();
      $("#q").value = "";
      renderChips();
      search();
    });
    return card;
  });
  $("#results").replaceChildren(...cards);
}

function chip(label, imageUrl, onClear) {
  const el = document.createElement("span");
  el.className = "chip";
  if (imageUrl) {
    const img = document.createElement("img");
    img.src = imageUrl;
    img.alt = "";
    el.append(img);
  }
  const text = document.createElement("span");
  text.textContent = label;
  const x = document.createElement("button");
  x.type = "button";
  x.textContent = "×";
  x.title = "remove";
  x.addEventListener("click", () => { onClear(); renderChips(); search(); });
  el.append(text, x);
  return el;
}

function renderChips() {
  const chips = [];
  if (state.file) {
    const isImage = state.file.type.startsWith("image/");
    chips.push(chip(`${state.file.name}`, isImage ? state.fileUrl : null, clearFile));
  }
  if (state.like) {
    chips.push(chip(`like ${state.like.name}`, state.like.thumbnail ? `${state.like.thumbnail}?size=64` : null,
                    () => { state.like = null; }));
  }
  $("#query-chips").replaceChildren(...chips);
  $("#query-chips").className = chips.length ? "active" : "";
}

function clearFile() {
  if (state.fileUrl) URL.revokeObjectURL(state.fileUrl);
  state.file = null;
  state.fileUrl = null;
  $("#file").value = "";
}

function useFile(file) {
  if (!file) return;
  clearFile();
  state.file = file;
  state.fileUrl = URL.createObjectURL(file);
  state.like = null;
  renderChips();
  search();
}

function setupDrop() {
  const drop = $("#drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    useFile(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") $("#file").click();
  });
  $("#file").addEventListener("change", (e) => useFile(e.target.files[0]));
}

function setupControls() {
  $("#search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    search();
  });
  document.querySelectorAll(".modality").forEach((el) => el.addEventListener("change", search));
  $("#k").addEventListener("change", search);
  $("#min-score").addEventListener("input", () => {
    const v = minScore();
    $("#min-score-value").textContent = v === null ? "off" : v.toFixed(2);
    clearTimeout(sliderTimer);
    sliderTimer = setTimeout(search, 150);
  });
  $("#key-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await api("session", { method: "POST", headers: { "Content-Type": "application/json" },
                             body: JSON.stringify({ key: $("#key").value }) });
      $("#key-form").hidden = true;
      $("#key").value = "";
      $("#key-error").textContent = "";
      loadCollection();
      search();
    } catch (err) {
      $("#key-error").textContent = err.message;
      $("#key-form").hidden = false;
    }
  });
}

async function loadCollection() {
  try {
    const session = await api("session");
    if (!session.authenticated) {
      $("#key-form").hidden = false;
      return;
    }
    const stats = await api("stats");
    const counts = Object.entries(stats.by_modality).map(([m, n]) => `${n} ${m}`).join(", ");
    $("#collection").textContent = `${stats.collection}: ${stats.items} items (${counts}) · ${stats.space.name}`;
    // Only the modalities the space covers can be searched for (the server refuses the others).
    const covered = stats.space.modalities || [];
    document.querySelectorAll(".modality").forEach((el) => {
      if (covered.length && !covered.includes(el.value)) {
        el.checked = false;
        el.closest("label").hidden = true;
      }
    });
  } catch (err) {
    showStatus(err.message, true);
  }
}

setupDrop();
setupControls();
renderChips();
loadCollection();
