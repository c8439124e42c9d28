// volseg review page: the table, flags, keyboard review (kept in localStorage) and the NiiVue viewer.
// Everything it loads lies beside index.html: cases/<id>.js scripts (file:// refuses fetch, not <script>).
"use strict";
const R = window.REPORT;
const LABELS = R.labels;
const REVIEW_KEY = "volseg-review:" + R.id;
const byId = Object.fromEntries(R.cases.map((c) => [c.id, c]));
let reviews = loadReviews();
let order = [];          // case ids as the table shows them now (sorted, filtered)
let current = null;      // the case in the viewer
let sortKey = "flags", sortDir = -1;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (ch) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[ch]));
const fmt = (x, digits) => (x === null || x === undefined ? "" : Number(x).toFixed(digits));
const hasMetrics = R.cases.some((c) => Object.keys(c.dice).length > 0);

function loadReviews() {
  try { return JSON.parse(localStorage.getItem(REVIEW_KEY) || "{}"); } catch (e) { return {}; }
}
function saveReviews() {
  try { localStorage.setItem(REVIEW_KEY, JSON.stringify(reviews)); } catch (e) { $("review-state").textContent = "reviews cannot be stored: " + e; }
}

// ------------------------------------------------------------------------------------------- the table
function columns() {
  const cols = [
    {key: "review", title: "review", value: (c) => (reviews[c.id] ? reviews[c.id].verdict : "")},
    {key: "thumb", title: "", value: () => 0, nosort: true},
    {key: "id", title: "case", value: (c) => c.id},
    {key: "status", title: "status", value: (c) => c.status},
    {key: "flags", title: "flags", value: (c) => c.flags.length},
    {key: "seconds", title: "s", value: (c) => c.seconds, num: 1},
  ];
  for (const l of LABELS) cols.push({key: "vol" + l.value, title: l.name + " mL", value: (c) => c.volumes[l.value], num: 2});
  if (hasMetrics) {
    for (const l of LABELS) cols.push({key: "dice" + l.value, title: "Dice " + l.name, value: (c) => c.dice[l.value], num: 3});
    for (const l of LABELS) cols.push({key: "hd" + l.value, title: "HD95 " + l.name, value: (c) => c.hd95[l.value], num: 1});
  }
  return cols;
}
const COLS = columns();

function cell(col, c) {
  if (col.key === "review") {
    const r = reviews[c.id];
    return r ? `<span class="verdict-${r.verdict}" title="${esc(r.note || "")}">${r.verdict}</span>` : "";
  }
  if (col.key === "flags") return c.flags.map((f) => `<span class="flag ${f.kind}">${esc(f.text)}</span>`).join("");
  if (col.key === "thumb") return c.thumb ? `<img class="thumb" loading="lazy" alt="" src="${esc(c.thumb)}">` : "";
  const v = col.value(c);
  return col.num ? fmt(v, col.num) : esc(v);
}

function rowHtml(c) {
  const cls = [c.status === "failed" ? "failed" : "", c.id === current ? "current" : ""].join(" ");
  return `<tr data-id="${esc(c.id)}" class="${cls}">` +
    COLS.map((col) => `<td class="${col.num ? "num" : col.key}">${cell(col, c)}</td>`).join("") + "</tr>";
}

function visibleCases() {
  const text = $("filter").value.trim().toLowerCase();
  const flagged = $("flagged-only").checked, unreviewed = $("unreviewed-only").checked, status = $("status-filter").value;
  return R.cases.filter((c) => (!text || c.id.toLowerCase().includes(text) || c.flags.some((f) => f.text.toLowerCase().includes(text)))
    && (!flagged || c.flags.length > 0) && (!unreviewed || !reviews[c.id]) && (!status || c.status === status));
}

function compare(a, b) {
  const col = COLS.find((k) => k.key === sortKey);
  let x = col.value(a), y = col.value(b);
  if (x === undefined || x === null) x = col.num ? -Infinity : "";
  if (y === undefined || y === null) y = col.num ? -Infinity : "";
  const d = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
  return d * sortDir || a.id.localeCompare(b.id);
}

function renderTable() {
  const cases = visibleCases().sort(compare);
  order = cases.map((c) => c.id);
  $("cases").tHead.innerHTML = "<tr>" + COLS.map((col) =>
    `<th data-key="${col.key}" class="${col.key === sortKey ? (sortDir > 0 ? "sorted-up" : "sorted-down") : ""}">${esc(col.title)}</th>`).join("") + "</tr>";
  $("cases").tBodies[0].innerHTML = cases.map(rowHtml).join("");
  renderSummary();
}

function renderSummary() {
  const n = R.cases.length, failed = R.cases.filter((c) => c.status === "failed").length;
  const partial = R.cases.filter((c) => c.status === "partial").length;
  const flagged = R.cases.filter((c) => c.flags.length).length, reviewed = R.cases.filter((c) => reviews[c.id]).length;
  $("summary").textContent = `${n} cases: ${n - failed} segmented${partial ? ` (${partial} partial)` : ""}, ${failed} failed, ${flagged} flagged; ` +
    `${reviewed} reviewed, ${order.length} shown. Built ${R.created}.`;
}

function updateRow(id) {
  const tr = document.querySelector(`#cases tr[data-id="${CSS.escape(id)}"]`);
  if (tr) tr.outerHTML = rowHtml(byId[id]);
  renderSummary();
}

// ------------------------------------------------------------------------------------------ evaluation
function renderEvaluation() {
  if (!R.evaluation) return;
  $("evaluation").hidden = false;
  const width = 420, height = 34;
  let html = "";
  for (const l of LABELS) {
    const s = R.evaluation[l.name];
    if (!s) continue;
    const points = R.cases.filter((c) => c.dice[l.value] !== undefined && c.dice[l.value] !== null);
    const dots = points.map((c) => `<circle cx="${10 + c.dice[l.value] * (width - 20)}" cy="${12 + ((c.id.length * 7) % 13)}" r="3"` +
      ` fill="${l.color}" fill-opacity="0.7"><title>${esc(c.id)}: ${fmt(c.dice[l.value], 3)}</title></circle>`).join("");
    const med = s.dice.median === null ? "" : `<line x1="${10 + s.dice.median * (width - 20)}" x2="${10 + s.dice.median * (width - 20)}" y1="4" y2="${height - 4}" stroke="#000"/>`;
    html += `<div><span class="swatch" style="background:${l.color}"></span><b>${esc(l.name)}</b> Dice mean ${fmt(s.dice.mean, 3)} ` +
      `&plusmn; ${fmt(s.dice.std, 3)}, median ${fmt(s.dice.median, 3)} (n=${s.dice.n}); HD95 median ${fmt(s.hd95.median, 1)} mm` +
      `<svg width="${width}" height="${height}" role="img"><line x1="10" x2="${width - 10}" y1="${height / 2}" y2="${height / 2}" stroke="#ccc"/>` +
      `<text x="2" y="${height - 2}" font-size="9">0</text><text x="${width - 10}" y="${height - 2}" font-size="9">1</text>${med}${dots}</svg></div>`;
  }
  $("distributions").innerHTML = html;
  const meanDice = (c) => { const v = Object.values(c.dice).filter((x) => x !== null); return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null; };
  const worst = R.cases.filter((c) => meanDice(c) !== null).sort((a, b) => meanDice(a) - meanDice(b));
  $("worst").tHead.innerHTML = "<tr><th>case</th><th>mean Dice</th>" + LABELS.map((l) => `<th>Dice ${esc(l.name)}</th>`).join("") + "</tr>";
  $("worst").tBodies[0].innerHTML = worst.map((c) => `<tr data-id="${esc(c.id)}"><td>${esc(c.id)}</td><td class="num">${fmt(meanDice(c), 3)}</td>` +
    LABELS.map((l) => `<td class="num">${fmt(c.dice[l.value], 3)}</td>`).join("") + "</tr>").join("");
}

// -------------------------------------------------------------------------------------------- review
function select(id) {
  if (!id || !byId[id]) return;
  const previous = current;
  current = id;
  if (previous) updateRow(previous);
  updateRow(id);
  const tr = document.querySelector(`#cases tr[data-id="${CSS.escape(id)}"]`);
  if (tr) tr.scrollIntoView({block: "nearest"});
  const c = byId[id];
  $("case-title").textContent = `${c.id} (${c.status}${c.status !== "failed" ? ", " + fmt(c.seconds, 1) + " s" : ""})`;
  $("case-flags").innerHTML = c.flags.map((f) => `<span class="flag ${f.kind}">${esc(f.text)}</span>`).join("") || "no flags";
  const r = reviews[id];
  $("note").value = r ? r.note || "" : "";
  $("review-state").textContent = r ? `${r.verdict} ${r.at}` : "not reviewed";
  showCase(c);
}

function step(delta) {
  if (!order.length) return;
  const i = order.indexOf(current);
  select(order[i < 0 ? 0 : Math.min(order.length - 1, Math.max(0, i + delta))]);
}

function nextUnreviewed() {
  const i = order.indexOf(current);
  const rest = order.slice(i + 1).concat(order.slice(0, i + 1));
  const id = rest.find((x) => !reviews[x]);
  if (id) select(id); else $("review-state").textContent = "every shown case is reviewed";
}

function mark(verdict) {
  if (!current) return;
  reviews[current] = {verdict, note: $("note").value.trim(), at: new Date().toISOString()};
  saveReviews();
  updateRow(current);
  $("review-state").textContent = `${verdict} saved`;
}

function exportCsv() {
  const q = (s) => `"${String(s === undefined || s === null ? "" : s).replace(/"/g, '""')}"`;
  const lines = ["case_id,verdict,note,reviewed_at,status,flags"];
  for (const c of R.cases) {
    const r = reviews[c.id] || {};
    lines.push([c.id, r.verdict, r.note, r.at, c.status, c.flags.map((f) => f.text).join("; ")].map(q).join(","));
  }
  const a = document.createElement("a");
  a.href = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], {type: "text/csv"}));
  a.download = `review_${R.title}.csv`;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

document.addEventListener("keydown", (ev) => {
  const typing = ev.target.tagName === "INPUT" && ev.target.type !== "checkbox" && ev.target.type !== "range";
  if (typing) {
    if (ev.key === "Enter" && ev.target.id === "note") { mark("flag"); ev.target.blur(); step(1); }
    if (ev.key === "Escape") ev.target.blur();
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const actions = {
    j: () => step(1), ArrowDown: () => step(1), k: () => step(-1), ArrowUp: () => step(-1),
    a: () => { mark("ok"); step(1); }, f: () => $("note").focus(), u: nextUnreviewed, e: exportCsv,
    r: () => { $("show-reference").checked = !$("show-reference").checked; if (current) showCase(byId[current]); },
  };
  if (actions[ev.key]) { ev.preventDefault(); actions[ev.key](); }
});

// -------------------------------------------------------------------------------------------- viewer
let nv = null;
const caseData = {};
const waiting = {};
window.volsegCaseData = (d) => { caseData[d.id] = d; (waiting[d.id] || []).forEach((f) => f(d)); delete waiting[d.id]; };

function loadCaseData(c) {
  if (caseData[c.id]) return Promise.resolve(caseData[c.id]);
  return new Promise((resolve, reject) => {
    (waiting[c.id] = waiting[c.id] || []).push(resolve);
    const s = document.createElement("script");
    s.src = c.data;
    s.onerror = () => reject(new Error(`${c.data} is missing beside the page`));
    document.head.appendChild(s);
  });
}

function viewerProblem() {
  if (typeof niivue === "undefined") return "the 3D viewer is not part of this page (NiiVue was not installed when it was built: run setup.sh, then `volseg report` again)";
  const probe = document.createElement("canvas");
  if (!probe.getContext("webgl2")) return "WebGL2 is not available in this browser";
  return null;
}

function showPictures(c, why) {
  $("viewer-box").hidden = true;
  $("viewer-controls").hidden = true;
  $("pictures").hidden = false;
  $("viewer-status").textContent = why + ": showing the static pictures instead.";
  $("pictures").innerHTML = c ? [c.qc, c.thumb].filter(Boolean).map((src) => `<img alt="" src="${esc(src)}">`).join("") : "";
}

function colormap() {
  const cm = {R: [0], G: [0], B: [0], A: [0], I: [0], labels: [""]};
  for (const l of LABELS) {
    cm.R.push(parseInt(l.color.slice(1, 3), 16)); cm.G.push(parseInt(l.color.slice(3, 5), 16));
    cm.B.push(parseInt(l.color.slice(5, 7), 16)); cm.A.push(255); cm.I.push(l.value); cm.labels.push(l.name);
  }
  return cm;
}

function applyView() {
  if (!nv) return;
  const v = $("view").value;
  nv.opts.multiplanarShowRender = v === "multi" ? niivue.SHOW_RENDER.ALWAYS : niivue.SHOW_RENDER.AUTO;
  const types = {multi: nv.sliceTypeMultiplanar, axial: nv.sliceTypeAxial, coronal: nv.sliceTypeCoronal,
                 sagittal: nv.sliceTypeSagittal, render: nv.sliceTypeRender};
  nv.setSliceType(types[v]);
}

let loadToken = 0;
async function showCase(c) {
  if (document.body.dataset.viewer === "unavailable") { showPictures(c, viewerProblem() || "no viewer"); return; }
  if (!c.data) { $("viewer-status").textContent = c.status === "failed" ? "failed case: nothing to show" : "no viewer data"; return; }
  if (!nv) return;  // the viewer starts after the table; it then opens the current case
  const token = ++loadToken;
  try {
    $("viewer-status").textContent = `loading ${c.id}`;
    const d = await loadCaseData(c);
    if (token !== loadToken) return;
    const showRef = $("show-reference").checked && d.reference;
    $("reference-toggle").hidden = !d.reference;
    const volumes = [];
    if (d.image) volumes.push(await niivue.NVImage.loadFromBase64({base64: d.image, name: `${c.id}_image.nii.gz`}));
    const labels = await niivue.NVImage.loadFromBase64({base64: showRef ? d.reference : d.labels, name: `${c.id}_labels.nii.gz`});
    labels.setColormapLabel(colormap());
    labels.opacity = Number($("opacity").value);
    volumes.push(labels);
    if (token !== loadToken) return;
    while (nv.volumes.length) nv.removeVolumeByIndex(nv.volumes.length - 1);
    for (const v of volumes) nv.addVolume(v);
    nv.setAtlasOutline($("outline").checked ? 1 : 0);
    applyView();
    nv.drawScene();
    $("viewer-status").textContent = `viewer ready: ${c.id}, ${showRef ? "reference" : "prediction"}${d.image ? "" : " (labels only: the scan was not readable when the page was built)"}`;
    document.body.dataset.viewer = "ready";
    document.body.dataset.viewerCase = c.id;
  } catch (e) {
    $("viewer-status").textContent = `viewer error on ${c.id}: ${e.message || e}`;
    document.body.dataset.viewer = "error";
  }
}

window.volsegStartViewer = async function () {
  const problem = viewerProblem();
  if (problem) {
    document.body.dataset.viewer = "unavailable";
    showPictures(current && byId[current], problem);
    return;
  }
  try {
    // radiological convention, as the QC pictures and thumbnails: the patient's right on the viewer's left
    nv = new niivue.Niivue({backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: false, loadingText: "",
                            isRadiologicalConvention: true});
    await nv.attachTo("viewer");
  } catch (e) {
    nv = null;
    document.body.dataset.viewer = "unavailable";
    showPictures(current && byId[current], "the viewer could not start (" + (e.message || e) + ")");
    return;
  }
  if (current) showCase(byId[current]);
};

// ---------------------------------------------------------------------------------------------- start
function legend() {
  $("legend").innerHTML = LABELS.map((l) => `<span><span class="swatch" style="background:${l.color}"></span>${esc(l.name)}</span>`).join("");
}

$("title").textContent = "- " + R.title;
$("cases").addEventListener("click", (ev) => {
  const th = ev.target.closest("th");
  if (th) {
    const col = COLS.find((k) => k.key === th.dataset.key);
    if (col && !col.nosort) { sortDir = sortKey === col.key ? -sortDir : (col.num ? -1 : 1); sortKey = col.key; renderTable(); }
    return;
  }
  const tr = ev.target.closest("tr[data-id]");
  if (tr) select(tr.dataset.id);
});
$("worst").addEventListener("click", (ev) => { const tr = ev.target.closest("tr[data-id]"); if (tr) select(tr.dataset.id); });
for (const id of ["filter", "flagged-only", "unreviewed-only", "status-filter"]) $(id).addEventListener("input", renderTable);
$("export").addEventListener("click", exportCsv);
$("mark-ok").addEventListener("click", () => mark("ok"));
$("mark-flag").addEventListener("click", () => mark("flag"));
$("opacity").addEventListener("input", () => { if (nv && nv.volumes.length) nv.setOpacity(nv.volumes.length - 1, Number($("opacity").value)); });
$("outline").addEventListener("change", () => { if (nv) { nv.setAtlasOutline($("outline").checked ? 1 : 0); nv.drawScene(); } });
$("view").addEventListener("change", () => { applyView(); if (nv) nv.drawScene(); });
$("show-reference").addEventListener("change", () => { if (current) showCase(byId[current]); });
legend();
renderTable();
renderEvaluation();
window.volsegTableMs = performance.now();
document.body.dataset.table = "ready";
// The viewer (2.3 MB of script) is compiled only after the table's first frame: the reader sees the
// table at once, not after the browser has parsed NiiVue.
requestAnimationFrame(() => setTimeout(() => {
  window.volsegTablePaintedMs = performance.now();
  const source = $("viewer-source").textContent;
  if (source.trim()) {
    const script = document.createElement("script");
    script.textContent = source;
    document.head.appendChild(script);
  }
  volsegStartViewer();
}, 0));
if (order.length) select(order[0]);
