// findbox page: pick an image, type captions, POST v1/ground, draw every candidate and the chosen boxes.
// Plain DOM, no dependencies; every element is built with createElement (the page's CSP forbids inline styles).
"use strict";

const COLORS = ["#ff5d8f", "#ffc53d", "#3ddc97", "#4cc9f0", "#c77dff", "#ff8c42", "#a0e426", "#f15bb5"];
const STAGES = ["decode", "queue", "image_cache", "detect", "crop_upscale", "embed_images", "embed_texts", "choose"];
const STAGE_NAMES = { image_cache: "image cache", crop_upscale: "crop+upscale", embed_images: "embed crops",
  embed_texts: "embed captions" };
// the image half of the work: skipped (exactly 0 ms) when the image came from the server's image cache
const IMAGE_STAGES = ["detect", "crop_upscale", "embed_images"];

const $ = (id) => document.getElementById(id);
const state = { b64: null, imageWH: null, response: null, captions: [] };

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "color") node.style.setProperty("--c", v);
    else node[k] = v;
  }
  for (const child of children) node.append(child);
  return node;
}

const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const fmtMs = (ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(ms < 10 ? 2 : 1)} ms`);
const fmtBox = (b) => "[" + b.map((v) => Math.round(v)).join(", ") + "]";

// ---------- health ----------
async function pollHealth() {
  const pill = $("health");
  try {
    const r = await fetch("health", { cache: "no-store" });
    const body = await r.json();
    pill.textContent = r.ok ? "models ready" : body.message || "not ready";
    pill.className = "pill " + (r.ok ? "ok" : "bad");
    if (r.ok) return;
  } catch (e) {
    pill.textContent = "server unreachable";
    pill.className = "pill bad";
  }
  setTimeout(pollHealth, 3000);
}

// ---------- image ----------
function setImage(dataUrl, label) {
  state.b64 = dataUrl.slice(dataUrl.indexOf(",") + 1);
  state.response = null;
  const img = $("image");
  img.onload = () => {
    state.imageWH = [img.naturalWidth, img.naturalHeight];
    $("image-info").textContent = `${label} · ${img.naturalWidth}×${img.naturalHeight}`;
    $("stage").classList.remove("empty");
    $("frame").hidden = false;
    clearResults();
    layoutFrame();
    updateFindButton();
  };
  img.onerror = () => showError("the browser cannot show this file as an image; the server may still read it");
  img.src = dataUrl;
}

function readFile(file) {
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => setImage(reader.result, file.name);
  reader.readAsDataURL(file);
}

// Fit the image into the stage keeping its aspect ratio; boxes are placed in % so they follow.
function layoutFrame() {
  if (!state.imageWH) return;
  const [w, h] = state.imageWH;
  const stage = $("stage");
  const maxW = stage.clientWidth - 24;
  const maxH = Math.max(260, window.innerHeight * 0.62);
  const scale = Math.min(maxW / w, maxH / h);
  $("frame").style.width = `${Math.round(w * scale)}px`;
  $("frame").style.height = `${Math.round(h * scale)}px`;
}

// A synthetic sky with a few aircraft-like shapes, drawn here: no file or network needed.
function sampleScene() {
  const canvas = el("canvas", { width: 960, height: 540 });
  const g = canvas.getContext("2d");
  const sky = g.createLinearGradient(0, 0, 0, 540);
  sky.addColorStop(0, "#6f9fd8");
  sky.addColorStop(1, "#dfe8f2");
  g.fillStyle = sky;
  g.fillRect(0, 0, 960, 540);
  g.fillStyle = "rgba(255,255,255,.55)";
  for (const [x, y, r] of [[150, 420, 60], [210, 430, 45], [720, 120, 50], [780, 110, 38], [840, 130, 30]]) {
    g.beginPath(); g.arc(x, y, r, 0, 2 * Math.PI); g.fill();
  }
  const plane = (x, y, s, body, wing, tail) => {
    g.save(); g.translate(x, y); g.scale(s, s);
    g.fillStyle = body; g.beginPath(); g.ellipse(0, 0, 60, 10, 0, 0, 2 * Math.PI); g.fill();
    g.fillStyle = wing; g.beginPath(); g.moveTo(-10, 0); g.lineTo(15, -42); g.lineTo(28, -42); g.lineTo(18, 0);
    g.lineTo(28, 42); g.lineTo(15, 42); g.closePath(); g.fill();
    g.fillStyle = tail; g.beginPath(); g.moveTo(-52, 0); g.lineTo(-64, -22); g.lineTo(-56, -22); g.lineTo(-40, 0); g.fill();
    g.restore();
  };
  plane(300, 170, 1.3, "#d8dde3", "#c0392b", "#1f4e9c");
  plane(690, 360, 0.9, "#5b6b3a", "#3f4a25", "#6d5a3a");
  g.fillStyle = "#f2c200";  // a small quadcopter
  g.fillRect(500, 110, 34, 12);
  g.fillStyle = "#333";
  for (const dx of [-6, 34]) g.fillRect(500 + dx, 104, 14, 3);
  g.fillStyle = "#8a8f96";  // a grey missile
  g.beginPath(); g.ellipse(190, 300, 55, 7, -0.25, 0, 2 * Math.PI); g.fill();
  setImage(canvas.toDataURL("image/jpeg", 0.92), "sample scene");
  const inputs = captionInputs();
  const suggestions = ["red, white, and blue light aircraft", "yellow drone"];
  inputs.forEach((input, i) => { if (!input.value && suggestions[i]) input.value = suggestions[i]; });
  updateFindButton();
}

// ---------- captions ----------
function captionInputs() { return [...$("captions").querySelectorAll("input")]; }

function addCaption(text = "", focus = false) {
  const list = $("captions");
  if (list.children.length >= COLORS.length) return;
  const input = el("input", { type: "text", value: text, placeholder: "e.g. grey missile", spellcheck: false });
  input.setAttribute("aria-label", "caption");
  input.addEventListener("input", updateFindButton);
  input.addEventListener("keydown", (e) => { if (e.key === "Enter") find(); });
  const remove = el("button", { type: "button", class: "remove", title: "remove this caption", textContent: "×" });
  const item = el("li", {}, el("span", { class: "dot" }), input, remove);
  remove.addEventListener("click", () => { if (list.children.length > 1) { item.remove(); recolor(); updateFindButton(); } });
  list.append(item);
  recolor();
  if (focus) input.focus();
}

function recolor() {
  [...$("captions").children].forEach((li, i) => { li.querySelector(".dot").style.background = COLORS[i]; });
  $("add-caption").disabled = $("captions").children.length >= COLORS.length;
}

function updateFindButton() {
  $("find").disabled = !state.b64 || !captionInputs().some((i) => i.value.trim());
}

// ---------- request ----------
function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function find() {
  if ($("find").disabled) return;
  const captions = captionInputs().map((i) => i.value.trim());
  const used = captions.map((c, i) => ({ caption: c, color: COLORS[i] })).filter((c) => c.caption);
  const body = { instances: used.map((c, key) => ({ key, caption: c.caption, b64: state.b64 })) };
  showError("");
  const button = $("find");
  button.disabled = true;
  button.classList.add("busy");
  button.textContent = "Finding…";
  const started = performance.now();
  try {
    const r = await fetch("v1/ground", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    const text = await r.text();
    let data;
    try { data = JSON.parse(text); } catch (e) { data = { detail: text }; }
    if (!r.ok) throw new Error(`${r.status}: ${data.detail || data.message || text}`);
    state.response = data;
    state.captions = used;
    render(data, used, performance.now() - started);
  } catch (e) {
    showError(e.message.startsWith("Failed to fetch") ? "the server did not answer" : e.message);
  } finally {
    button.classList.remove("busy");
    button.textContent = "Find";
    updateFindButton();
  }
}

// ---------- results ----------
function clearResults() {
  $("overlay").replaceChildren();
  $("answers").replaceChildren();
  $("candidates").hidden = true;
}

function placeBox(node, box, [w, h]) {
  const [l, t, bw, bh] = box;
  node.style.left = `${(100 * l) / w}%`;
  node.style.top = `${(100 * t) / h}%`;
  node.style.width = `${(100 * bw) / w}%`;
  node.style.height = `${(100 * bh) / h}%`;
  return node;
}

function render(data, captions, roundTripMs) {
  clearResults();
  const results = data.results;
  const wh = results[0].image_wh;
  const candidates = results[0].candidates;  // one image: the same proposals for every caption
  const overlay = $("overlay");
  overlay.classList.toggle("only-chosen", !$("show-all").checked);

  candidates.forEach((c, i) => {
    overlay.append(placeBox(el("div", { class: "box candidate", dataset: { index: i, box: c.box.join(",") },
      title: `#${i} det ${fmt(c.det_conf)}` }, el("span", { class: "tag", textContent: `#${i}` })), c.box, wh));
  });
  const sameBox = {};  // captions that chose the same box: nest the frames and stack the labels
  results.forEach((r, k) => {
    const { caption, color } = captions[k];
    const nth = (sameBox[r.box.join(",")] = (sameBox[r.box.join(",")] ?? -1) + 1);
    const box = placeBox(el("div", { class: "box chosen", color, title: caption,
      dataset: { caption, box: r.box.join(","), index: r.chosen, nth } },
      el("span", { class: "label", textContent: r.fallback ? `${caption} (fallback)` : caption })), r.box, wh);
    if (nth) {
      const px = 5 * nth;
      box.style.left = `calc(${box.style.left} + ${px}px)`;
      box.style.top = `calc(${box.style.top} + ${px}px)`;
      box.style.width = `calc(${box.style.width} - ${2 * px}px)`;
      box.style.height = `calc(${box.style.height} - ${2 * px}px)`;
    }
    overlay.append(box);

    const chosen = r.chosen >= 0 ? r.candidates[r.chosen] : null;
    const facts = el("div", { class: "facts" },
      "box", el("b", { class: "num", textContent: fmtBox(r.box) }),
      "candidate", el("b", { textContent: chosen ? `#${r.chosen}` : "none: fallback box" }),
      "score", el("b", { class: "num", textContent: chosen ? fmt(chosen.score) : "–" }),
      "det conf", el("b", { class: "num", textContent: chosen ? fmt(chosen.det_conf) : "–" }));
    $("answers").append(el("div", { class: "answer" + (r.fallback ? " fallback" : ""), color, dataset: { caption } },
      el("div", { class: "caption", textContent: caption }), facts));
  });

  // one row per candidate, one score column per caption; the winner's cell takes the caption's colour
  const table = $("candidates");
  const head = el("tr", {}, el("th", { textContent: "#" }), el("th", { textContent: "box [l, t, w, h]" }),
    el("th", { textContent: "det conf" }));
  captions.forEach(({ caption, color }) => {
    const dot = el("span", { class: "dot" });
    dot.style.background = color;
    head.append(el("th", { title: caption }, dot, caption.length > 22 ? caption.slice(0, 21) + "…" : caption));
  });
  table.tHead.replaceChildren(head);
  const rows = candidates.map((c, i) => {
    const row = el("tr", { dataset: { index: i } }, el("td", { class: "num", textContent: i }),
      el("td", { class: "num box-cell", textContent: fmtBox(c.box) }), el("td", { class: "num", textContent: fmt(c.det_conf) }));
    results.forEach((r, k) => {
      const win = r.chosen === i;
      row.append(el("td", { class: "num score" + (win ? " win" : ""), color: captions[k].color,
        textContent: fmt(r.candidates[i].score) }));
    });
    const linked = () => overlay.querySelectorAll(`.box[data-index="${i}"]`);
    row.addEventListener("mouseenter", () => linked().forEach((b) => b.classList.add("hover")));
    row.addEventListener("mouseleave", () => linked().forEach((b) => b.classList.remove("hover")));
    return row;
  });
  if (!rows.length) {
    rows.push(el("tr", {}, el("td", { colSpan: 3 + captions.length, class: "muted", textContent: "the detector proposed no box" })));
  }
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = false;

  placeLabels();
  renderTimings(data.timings_ms, roundTripMs);
}

// Each chosen box's caption sits outside the box, above it (below it where the image's top edge leaves no
// room), so the label never hides the object, however small the box; it is moved left where it would run
// past the image's right edge. Captions that chose the same box stack their labels outward.
function placeLabels() {
  const frame = $("frame").getBoundingClientRect();  // boxes sit at fractional pixels: measure, don't round
  for (const box of $("overlay").querySelectorAll(".box.chosen")) {
    const label = box.querySelector(".label");
    label.style.maxWidth = `${frame.width}px`;
    const b = box.getBoundingClientRect();
    const h = label.offsetHeight;
    const border = box.clientTop;  // top/left are measured from the box's padding edge, inside its border
    const nth = Number(box.dataset.nth);
    const outward = 5 * nth + nth * h;  // the nested frame's inset (render) + the labels stacked before
    const above = b.top - frame.top - outward - h >= 0;
    label.classList.toggle("below", !above);
    label.style.top = above ? `${-(border + outward + h)}px` : `${b.height - border + outward}px`;
    const left = b.left - frame.left;
    const shift = Math.max(0, Math.min(left + label.getBoundingClientRect().width - frame.width, left));
    label.style.left = `${-(border + shift)}px`;
  }
}

function renderTimings(timings, roundTripMs) {
  const total = timings.total || Object.values(timings).reduce((a, b) => a + b, 0);
  const scale = Math.max(total, roundTripMs, 1e-9);
  const row = (name, ms, cls) => {
    const bar = el("div", { class: "bar" });
    bar.style.width = `${Math.max(0.5, (100 * ms) / scale)}%`;
    return el("tr", { class: `timing ${cls}`, dataset: { stage: name } },
      el("td", { class: "name", textContent: STAGE_NAMES[name] || name }),
      el("td", { class: "track" }, bar), el("td", { class: "ms num", textContent: fmtMs(ms) }));
  };
  const known = STAGES.filter((s) => s in timings);
  const other = Object.keys(timings).filter((s) => !STAGES.includes(s) && s !== "total");
  const rows = [...known, ...other].map((s) => row(s, timings[s], ""));
  // a cache hit skipped the image's work: say so rather than show "detect 0.00 ms"
  if ("image_cache" in timings && IMAGE_STAGES.every((s) => timings[s] === 0)) {
    for (const r of rows.filter((r) => IMAGE_STAGES.includes(r.dataset.stage))) {
      r.classList.add("cached");
      r.querySelector("td.ms").textContent = "cached";
      r.title = "the image's boxes and crop embeddings came from the server's image cache";
    }
  }
  rows.push(row("total", total, "total"), row("round trip", roundTripMs, "total roundtrip"));
  $("timings").tBodies[0].replaceChildren(...rows);
}

// ---------- wiring ----------
function init() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => readFile(e.target.files[0]));
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); $("file").click(); } });
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.remove("over"); });
  }
  // a drop anywhere on the page counts (the zone's drop bubbles up to here)
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => { e.preventDefault(); readFile(e.dataTransfer.files[0]); });
  window.addEventListener("paste", (e) => {
    const item = [...(e.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
    if (item) readFile(item.getAsFile());
  });
  window.addEventListener("resize", () => { layoutFrame(); placeLabels(); });
  $("sample").addEventListener("click", sampleScene);
  $("add-caption").addEventListener("click", () => addCaption("", true));
  $("find").addEventListener("click", find);
  $("show-all").addEventListener("change", (e) => $("overlay").classList.toggle("only-chosen", !e.target.checked));
  addCaption();
  addCaption();
  pollHealth();
}

init();
