// The status page: polls the live summary (/v1/markets/{market}/status) while the tab is
// visible, draws the trends with uPlot, pages through the epoch list, shows the rewards per slot
// of the newest day that has them (and earlier days on request), and checks a submission's inclusion proof in this browser:
// the batch bytes hash to their CID, the submission-id tree (SHA-256 leaves, height 32) rebuilt
// from the documents and the proof's path both give the published root (keccak-256 of the tree
// root, js-sha3), which is the batch's roothash on chain.
"use strict";

const base = location.pathname.replace(/\/status\/?$/, "").replace(/\/$/, "");
const $ = id => document.getElementById(id);
const ACCEPTED_COLOR = "#32d583";
const COLORS = ["#b42318", "#dc6803", "#7a5af8", "#0e9384", "#c11574", "#667085", "#2e90fa", "#854a0e"];
const reasonColor = {};
const PAGE = 48;

const S = {
  market: null,
  page: { explorerTxUrl: null, ipfsGatewayUrl: "https://ipfs.io/ipfs/{cid}", pollMs: 5000 },
  summary: null,
  fetchedAt: 0,
  previous: null,
  timer: null,
  failures: 0,
  history: [],       // `before` values of the pages shown before this one (empty: live)
  shown: null,       // the epoch list on screen when paging back
  charts: {},
  rendered: () => {},
  selected: null,
  // Rewards: the newest day with rewards (from the summary), the day shown, whether the view
  // follows the newest day, and the shown day's answer.
  rewards: { latest: null, day: null, following: true, shown: null, asked: 0, pending: null },
};

function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
async function getJson(path) {
  const r = await fetch(base + path, { cache: "no-store" });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  if (!r.ok) {
    const e = new Error((body && body.error && (body.error.code + ": " + body.error.message)) || ("HTTP " + r.status));
    e.status = r.status;
    throw e;
  }
  return body;
}
function color(reason) {
  if (!(reason in reasonColor)) reasonColor[reason] = COLORS[Object.keys(reasonColor).length % COLORS.length];
  return reasonColor[reason];
}
function age(ms) {
  if (ms == null || !isFinite(ms)) return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return s + " s";
  const m = Math.floor(s / 60);
  if (m < 90) return m + " min " + (s % 60) + " s";
  const h = Math.floor(m / 60);
  if (h < 48) return h + " h " + (m % 60) + " min";
  return Math.floor(h / 24) + " d " + (h % 24) + " h";
}
function duration(ms) { return ms == null ? "–" : (ms < 10000 ? (ms / 1000).toFixed(1) + " s" : age(ms)); }
// The server's clock now: its time at the last summary plus what passed here since.
function serverNow() { return S.summary ? S.summary.nowMs + (Date.now() - S.fetchedAt) : Date.now(); }
function ago(at) { return at == null ? "–" : age(serverNow() - at); }
// An age that moves with the clock (renderAges updates every `data-at` once a second).
function agoSpan(at) { return `<span data-at="${Number(at)}">${ago(at)}</span>`; }
const TX = /^0x[0-9a-fA-F]{64}$/;
const CID = /^(b[a-z2-7]{20,}|Qm[1-9A-HJ-NP-Za-km-z]{44})$/;
function link(url, text) {
  return `<a href="${esc(url)}" target="_blank" rel="noopener noreferrer">${esc(text)}</a>`;
}
function txLink(tx) {
  if (!tx) return "–";
  if (!TX.test(tx) || !S.page.explorerTxUrl) return `<span class="mono">${esc(tx)}</span>`;
  return `<span class="mono">${link(S.page.explorerTxUrl.replace("{tx}", tx), tx)}</span>`;
}
function cidLink(cid) {
  if (!cid) return "–";
  if (!CID.test(cid) || !S.page.ipfsGatewayUrl) return `<span class="mono">${esc(cid)}</span>`;
  return `<span class="mono">${link(S.page.ipfsGatewayUrl.replace("{cid}", cid), cid)}</span>`;
}
function setCard(id, level) {
  const c = $(id);
  c.classList.toggle("bad", level === "bad");
  c.classList.toggle("warn", level === "warn");
}
function setLive(state, text) {
  const l = $("live");
  l.dataset.state = state;
  l.textContent = text;
}

// ---------------------------------------------------------------- the live summary

function schedule(ms) {
  clearTimeout(S.timer);
  S.timer = null;
  if (document.visibilityState === "hidden") return;
  S.timer = setTimeout(poll, ms);
}
async function poll() {
  S.timer = null;
  if (document.visibilityState === "hidden") return;
  try {
    const s = await getJson(`/v1/markets/${S.market}/status`);
    S.previous = S.summary;
    S.summary = s;
    S.fetchedAt = Date.now();
    S.failures = 0;
    if (s.page) S.page = s.page;
    render();
    S.rendered();
    setLive("live", "live · every " + Math.round(S.page.pollMs / 1000) + " s");
  } catch (err) {
    S.failures += 1;
    setLive("offline", "offline, retrying (" + err.message + ")");
  }
  // Back off while the API is unreachable: up to a minute.
  schedule(Math.min(S.page.pollMs * 2 ** Math.min(S.failures, 4), 60000));
}
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") {
    clearTimeout(S.timer);
    S.timer = null;
    setLive("paused", "paused (tab hidden)");
  } else if (S.market) {
    poll();
  }
});
// Ages move between polls.
setInterval(() => { if (S.summary && document.visibilityState !== "hidden") renderAges(); }, 1000);

function render() {
  renderCards();
  renderAges();
  renderIngress();
  if (S.history.length === 0) {
    renderEpochs(S.summary.epochs, S.summary.next_before);
  }
  syncRewards();
}
function renderAges() {
  const s = S.summary;
  const tickAt = s.chain.tickAtMs;
  $("head-age").textContent = s.chain.head == null ? "the tick has not run yet" : "tick saw it " + ago(tickAt) + " ago";
  const stale = tickAt != null && serverNow() - tickAt > Math.max(3 * S.page.pollMs, 120000);
  setCard("card-head", s.chain.head == null || stale ? "warn" : null);
  if (s.latest) {
    $("latest-age").textContent = "released " + ago(s.latest.seenAtMs) + " ago · " + s.latest.state + " for " + ago(s.nowMs - s.latest.inStateMs);
  }
  if (s.releaseLag) {
    const l = s.releaseLag, seen = s.nowMs - l.ms;
    $("lag").textContent = l.blocks == null ? ago(seen) : l.blocks + " blocks";
    $("lag-detail").textContent = "newest release " + ago(seen) + " ago" +
      (l.typicalBlocks ? " · usually every " + l.typicalBlocks + " blocks" : "");
    setCard("card-lag", l.typicalBlocks && l.blocks != null && l.blocks > 3 * l.typicalBlocks ? "warn" : null);
  }
  for (const el of document.querySelectorAll("[data-at]")) el.textContent = ago(Number(el.dataset.at));
}
function renderCards() {
  const s = S.summary;
  $("head").textContent = s.chain.head == null ? "–" : "#" + s.chain.head;
  if (s.latest) {
    $("latest").innerHTML = `${s.latest.epochId} <span class="state ${esc(s.latest.state)}">${esc(s.latest.state)}</span>`;
  } else {
    $("latest").textContent = "none yet";
    $("latest-age").textContent = "no epoch released";
  }
  if (!s.releaseLag) { $("lag").textContent = "–"; $("lag-detail").textContent = "no release yet"; }
  const f = s.anchorFailures;
  $("failures").textContent = String(f.count);
  $("failures-detail").innerHTML = `in the last ${f.window} epochs` +
    f.latest.map(x => `<br>epoch ${x.epochId}: ${esc(x.failure ?? "no reason recorded")}`).join("");
  setCard("card-failures", f.count > 0 ? "bad" : null);
  const dl = s.deadLetters || [];
  $("dlq").innerHTML = dl.length === 0 ? "none shown by this deployment" : dl.map(q =>
    `<div><span class="mono">${esc(q.queue)}</span>: <b class="${q.depth ? "fail" : (q.depth === 0 ? "ok" : "skip")}">${q.depth ?? "unknown"}</b>` +
    (q.error ? ` <span class="muted">(${esc(q.error)})</span>` : "") + `</div>`).join("");
  setCard("card-dlq", dl.some(q => q.depth > 0) ? "bad" : (dl.some(q => q.depth == null) ? "warn" : null));
}
function pathRate(r, p) {
  if (p.acceptedPerSec != null) return p.acceptedPerSec;
  // The source measured no rate: the difference since the previous summary, if there is one.
  const prev = S.previous && (S.previous.ingress || []).find(x => x.replica === r.replica);
  const pp = prev && prev.paths.find(x => x.path === p.path);
  if (!pp || r.atMs - prev.atMs < 1000 || p.accepted < pp.accepted) return null;
  return (p.accepted - pp.accepted) / ((r.atMs - prev.atMs) / 1000);
}
function renderIngress() {
  const s = S.summary, out = $("ingress");
  if (s.ingress == null) {
    out.className = "replicas muted";
    out.textContent = s.ingressError ? "could not be read: " + s.ingressError : "not reported by this deployment";
    return;
  }
  if (s.ingress.length === 0) {
    out.className = "replicas";
    out.innerHTML = `<div class="replica bad">no ingress replica is reporting</div>`;
    return;
  }
  out.className = "replicas";
  out.innerHTML = s.ingress.map(r => {
    const old = s.nowMs - r.atMs > 60000;
    const paths = r.paths.map(p => {
      const rate = pathRate(r, p);
      return `<dt>${esc(p.path)}</dt><dd>${rate == null ? "–" : rate.toFixed(1)}/s · ${p.accepted} accepted · ${p.rejected} rejected</dd>`;
    }).join("");
    return `<div class="replica${old ? " warn" : ""}" data-replica="${esc(r.replica)}"><b class="mono">${esc(r.replica)}</b>
      <span class="muted">· reported ${agoSpan(r.atMs)} ago</span>
      <dl><dt>connections</dt><dd>${r.connections}</dd><dt>streams</dt><dd>${r.streams}</dd>${paths}</dl></div>`;
  }).join("");
}

// ---------------------------------------------------------------- charts

function chartWidth(el) { return Math.max(200, el.clientWidth || 300); }
function drawChart(key, el, opts, data) {
  const c = S.charts[key];
  const sig = opts.series.map(x => x.label).join("|");
  if (c && c.sig === sig) {
    c.plot.setData(data);
    return;
  }
  if (c) c.plot.destroy();
  el.textContent = "";
  const plot = new uPlot({ ...opts, width: chartWidth(el), height: 220 }, data, el);
  S.charts[key] = { plot, sig, el };
}
if (window.ResizeObserver) {
  new ResizeObserver(() => {
    for (const c of Object.values(S.charts)) c.plot.setSize({ width: chartWidth(c.el), height: 220 });
  }).observe(document.body);
}
function renderCharts(epochs) {
  const rows = [...epochs].reverse();
  const lat = $("chart-latency"), cnt = $("chart-counts");
  if (rows.length === 0) {
    for (const c of Object.values(S.charts)) c.plot.destroy();
    S.charts = {};
    lat.textContent = cnt.textContent = "no epochs yet";
    $("legend-counts").textContent = "";
    return;
  }
  const xs = rows.map(e => e.epochId);
  const axes = [{ label: "epoch", values: (u, v) => v.map(x => Number.isInteger(x) ? String(x) : "") }, {}];
  drawChart("latency", lat, {
    scales: { x: { time: false } },
    axes,
    legend: { show: false },
    series: [{}, { label: "close → anchored (s)", stroke: "#175cd3", width: 2, spanGaps: true,
      points: { show: true, size: 5, fill: "#175cd3" } }],
  }, [xs, rows.map(e => e.closeToAnchoredMs == null ? null : e.closeToAnchoredMs / 1000)]);
  // Stacked bars: each series is drawn up to its layer's cumulative height, tallest first, so the
  // lower layers paint over it; the legend below names each layer and its total.
  const reasons = [...new Set(rows.flatMap(e => Object.keys(e.counts.rejectedByReason)))].sort();
  const layers = [{ label: "accepted", color: ACCEPTED_COLOR, values: rows.map(e => e.counts.accepted) }]
    .concat(reasons.map(r => ({ label: r, color: color(r), values: rows.map(e => e.counts.rejectedByReason[r] || 0) })));
  const cum = [];
  layers.forEach((l, i) => cum.push(l.values.map((v, j) => v + (i ? cum[i - 1][j] : 0))));
  const order = layers.map((_, i) => i).reverse();
  const bars = uPlot.paths.bars({ size: [0.7, 36] });
  drawChart("counts", cnt, {
    scales: { x: { time: false } },
    axes,
    legend: { show: false },
    series: [{}].concat(order.map(i => ({ label: layers[i].label, fill: layers[i].color, stroke: layers[i].color,
      width: 0, paths: bars, points: { show: false } }))),
  }, [xs].concat(order.map(i => cum[i])));
  $("legend-counts").innerHTML = layers.map(l =>
    `<span><i style="background:${l.color}"></i>${esc(l.label)} ${l.values.reduce((a, b) => a + b, 0)}</span>`).join("");
}

// ---------------------------------------------------------------- epochs and paging

function bar(e) {
  const c = e.counts, total = c.accepted + c.rejected || 1;
  let h = `<div class="bar" role="img" aria-label="${c.accepted} accepted, ${c.rejected} rejected">`;
  h += `<span style="width:${100 * c.accepted / total}%;background:${ACCEPTED_COLOR}"></span>`;
  for (const [r, n] of Object.entries(c.rejectedByReason)) h += `<span style="width:${100 * n / total}%;background:${color(r)}"></span>`;
  h += "</div>";
  const reasons = Object.entries(c.rejectedByReason).map(([r, n]) => `${esc(r)} ${n}`).join(", ");
  return h + (reasons ? `<div class="reasons">${reasons}</div>` : "");
}
function renderEpochs(epochs, nextBefore) {
  S.shown = { epochs, nextBefore };
  const rows = epochs.map(e => `<tr class="epoch${String(e.epochId) === String(S.selected) ? " sel" : ""}" data-epoch="${e.epochId}" tabindex="0">
    <td>${e.epochId}</td><td class="state ${esc(e.state)}">${esc(e.state)}</td>
    <td>${agoSpan(e.seenAtMs)}</td>
    <td>${e.counts.accepted} / ${e.counts.rejected}${e.countsFinal ? "" : ` <span class="muted">(live)</span>`}</td>
    <td>${bar(e)}</td><td>${e.batchCount ?? "–"}</td><td>${duration(e.closeToAnchoredMs)}</td></tr>`);
  $("epochs").innerHTML = rows.join("") || `<tr><td colspan="7" class="muted">no epochs yet</td></tr>`;
  for (const tr of document.querySelectorAll("tr.epoch")) {
    tr.onclick = () => showEpoch(tr.dataset.epoch);
    tr.onkeydown = ev => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); showEpoch(tr.dataset.epoch); } };
  }
  const first = epochs.length ? epochs[epochs.length - 1].epochId : null, last = epochs.length ? epochs[0].epochId : null;
  $("page-label").textContent = (first == null ? "no epochs" : `epochs ${first}–${last}`) + (S.history.length ? "" : " · live");
  $("older").disabled = nextBefore == null;
  $("newer").disabled = S.history.length === 0;
  renderCharts(epochs);
}
async function older() {
  const before = S.shown && S.shown.nextBefore;
  if (before == null) return;
  const list = await getJson(`/v1/markets/${S.market}/epochs?before=${before}&limit=${PAGE}`);
  S.history.push(before);
  renderEpochs(list.epochs, list.next_before);
}
async function newer() {
  S.history.pop();
  if (S.history.length === 0) {
    renderEpochs(S.summary.epochs, S.summary.next_before);
    return;
  }
  const before = S.history[S.history.length - 1];
  const list = await getJson(`/v1/markets/${S.market}/epochs?before=${before}&limit=${PAGE}`);
  renderEpochs(list.epochs, list.next_before);
}
function guarded(f) {
  return async () => {
    try { await f(); } catch (err) { $("page-label").textContent = "error: " + err.message; }
  };
}
$("older").onclick = guarded(older);
$("newer").onclick = guarded(newer);

async function showEpoch(epoch) {
  S.selected = epoch;
  for (const tr of document.querySelectorAll("tr.epoch")) tr.classList.toggle("sel", tr.dataset.epoch === String(epoch));
  try {
    const e = await getJson(`/v1/markets/${S.market}/epochs/${encodeURIComponent(epoch)}`);
    $("detail-title").textContent = `Epoch ${e.epochId}: ${e.state}, released in block ${e.releaseBlock}, window to ${e.windowEnd}`;
    const rows = e.batches.map(b => `<tr><td>${b.index}</td><td>${cidLink(b.cid)}<div class="muted">${b.projects} projects, ${b.submissions} submissions, ${b.bytes} bytes</div></td>
      <td class="mono">${esc(b.roothash)}</td><td>${txLink(b.txHash)}${b.delayed ? ` <span class="muted">(delayed)</span>` : ""}</td><td>${b.block ?? "–"}</td></tr>`);
    $("detail").className = "";
    $("detail").innerHTML = rows.length
      ? `<div class="scroll"><table><thead><tr><th>#</th><th>batch CID</th><th>roothash</th><th>transaction</th><th>block</th></tr></thead><tbody>${rows.join("")}</tbody></table></div>` +
        `<p class="muted">endBatchSubmissions ${txLink(e.endTx)}${e.failure ? ` · <span class="fail">failed: ${esc(e.failure)}</span>` : ""}</p>`
      : "no batches" + (e.failure ? ": " + esc(e.failure) : " yet");
  } catch (err) {
    $("detail").textContent = "error: " + err.message;
  }
}

// ---------------------------------------------------------------- rewards per slot per day

// Called with each summary: shows the section once a day has rewards, follows the newest day
// unless the reader stepped back, and asks again for a day whose commit is still under way.
function syncRewards() {
  const R = S.rewards, latest = S.summary.latestRewardsDay ?? null;
  $("rewards-section").hidden = latest == null;
  if (latest == null) return;
  const moved = latest !== R.latest;
  R.latest = latest;
  if (R.day == null || (R.following && moved)) {
    R.pending = showDay(latest);
  } else {
    if (R.shown && R.shown.day === R.day && R.shown.status !== "committed") showDay(R.day);
    renderRewardsPager();
  }
}
function renderRewardsPager() {
  const R = S.rewards;
  $("rewards-label").textContent = R.day == null ? "" : `day ${R.day}` + (R.day === R.latest ? " · newest" : ` of ${R.latest}`);
  $("rewards-later").disabled = R.day == null || R.day >= R.latest;
  $("rewards-earlier").disabled = R.day == null || R.day <= 1;
}
async function showDay(day) {
  const R = S.rewards, asked = ++R.asked;
  R.day = day;
  R.following = day === R.latest;
  renderRewardsPager();
  let d = null, err = null;
  try {
    d = await getJson(`/v1/markets/${S.market}/days/${day}/rewards`);
  } catch (e) {
    err = e;
  }
  if (asked !== R.asked) return; // a later request took over
  R.shown = d;
  if (err) {
    $("rewards-summary").textContent = err.status === 404 ? `no rewards recorded for day ${day}` : "error: " + err.message;
    $("rewards").innerHTML = `<tr><td colspan="5" class="muted">–</td></tr>`;
    return;
  }
  renderDay(d);
}
// What the day's updateRewards commit did for a slot.
function slotCommit(d, s) {
  const c = d.committed;
  if (!c) return `<span class="skip">pending</span>`;
  const done = c.completed.includes(s.slot) ? " · task completed" : "";
  if (c.recorded.includes(s.slot)) return `<span class="ok">sent</span>${done}`;
  if (c.already.includes(s.slot)) return `<span class="ok">recorded earlier</span>${done}`;
  return `<span class="muted">not sent${s.eligible === 0 ? " (nothing eligible)" : ""}</span>`;
}
function renderDay(d) {
  const c = d.committed, met = d.slots.filter(s => s.met_quota).length;
  let commit;
  if (!c) commit = `<span class="skip">updateRewards not sent yet</span> (computed; the commit is under way)`;
  else if (c.txs.length === 0) commit = `nothing to send (no eligible submission) · ${agoSpan(c.at_ms)} ago`;
  else commit = `<span class="ok">updateRewards sent</span> in ${c.txs.map(txLink).join(", ")} · ${agoSpan(c.at_ms)} ago`;
  $("rewards-summary").innerHTML = `Day ${d.day}: epochs ${d.first_epoch}–${d.last_epoch} · quota ${d.quota} · ` +
    `${met} of ${d.slots.length} slots met it · ${commit}`;
  $("rewards").innerHTML = d.slots.map(s => `<tr data-slot="${s.slot}"><td>${s.slot}</td><td>${s.eligible}</td><td>${s.discarded}</td>` +
    `<td>${s.met_quota ? `<span class="ok">yes</span>` : "no"}</td><td>${slotCommit(d, s)}</td></tr>`).join("") ||
    `<tr><td colspan="5" class="muted">no slot submitted that day</td></tr>`;
}
function rewardsGuarded(f) {
  return async () => {
    try { await f(); } catch (err) { $("rewards-summary").textContent = "error: " + err.message; }
  };
}
$("rewards-later").onclick = rewardsGuarded(() => S.rewards.day < S.rewards.latest && showDay(S.rewards.day + 1));
$("rewards-earlier").onclick = rewardsGuarded(() => S.rewards.day > 1 && showDay(S.rewards.day - 1));

// ---------------------------------------------------------------- proof check in the browser

class Stop extends Error {}

function hex(bytes) { return "0x" + [...bytes].map(b => b.toString(16).padStart(2, "0")).join(""); }
function unhex(h) {
  const s = h.replace(/^0x/, "");
  if (!/^[0-9a-fA-F]*$/.test(s) || s.length % 2) throw new Error("not hex: " + h);
  return Uint8Array.from(s.match(/../g) || [], x => parseInt(x, 16));
}
async function sha256(bytes) { return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes)); }
async function pair(l, r) {
  const b = new Uint8Array(64);
  b.set(l, 0); b.set(r, 32);
  return sha256(b);
}
function keccak(bytes) { return "0x" + keccak256(bytes); }
let zeros = null;
async function zeroHashes() {
  if (!zeros) {
    zeros = [new Uint8Array(32)];
    for (let h = 0; h < 32; h++) zeros.push(await pair(zeros[h], zeros[h]));
  }
  return zeros;
}
// The root of the height-32 tree over these leaves, empty places zero (PROTOCOL: docs/protocol.md).
async function treeRoot(leaves) {
  const z = await zeroHashes();
  let level = leaves;
  if (level.length === 0) return z[32];
  for (let h = 0; h < 32; h++) {
    const next = [];
    for (let i = 0; i < level.length; i += 2) next.push(pair(level[i], i + 1 < level.length ? level[i + 1] : z[h]));
    level = await Promise.all(next);
  }
  return level[0];
}
async function rootFromPath(leaf, index, siblings) {
  let node = leaf;
  for (let h = 0; h < siblings.length; h++) {
    const sib = unhex(siblings[h]);
    node = Math.floor(index / 2 ** h) % 2 ? await pair(sib, node) : await pair(node, sib);
  }
  return node;
}
const B32 = "abcdefghijklmnopqrstuvwxyz234567";
function base32(s) {
  let bits = 0, value = 0;
  const out = [];
  for (const ch of s) {
    const v = B32.indexOf(ch);
    if (v < 0) throw new Error("not base32");
    value = (value << 5) | v; bits += 5;
    if (bits >= 8) { out.push((value >>> (bits - 8)) & 255); bits -= 8; }
  }
  return Uint8Array.from(out);
}
function varint(b, at) {
  let n = 0, shift = 0;
  for (;;) {
    if (at.i >= b.length || shift > 49) throw new Error("bad varint");
    const x = b[at.i++];
    n += (x & 127) * 2 ** shift;
    if (!(x & 128)) return n;
    shift += 7;
  }
}
// A raw CIDv1 (base32) names sha-256 of the bytes themselves: true or false. Any other CID names
// a DAG the browser cannot rebuild here: null.
async function bytesMatchCid(cid, bytes) {
  if (!cid.startsWith("b")) return null;
  const b = base32(cid.slice(1)), at = { i: 0 };
  if (varint(b, at) !== 1) return null;
  if (varint(b, at) !== 0x55) return null;
  if (varint(b, at) !== 0x12 || varint(b, at) !== 32) return null;
  const digest = b.slice(at.i, at.i + 32);
  return hex(digest) === hex(await sha256(bytes));
}
function check(list, ok, text) {
  list.push({ ok, text });
  const cls = ok === true ? "ok" : ok === false ? "fail" : "skip";
  const word = ok === true ? "✓" : ok === false ? "✗" : "–";
  $("checks").insertAdjacentHTML("beforeend", `<li class="${cls}" data-ok="${ok}">${word} <span>${esc(text)}</span></li>`);
  return ok;
}
async function verifyInBrowser(f) {
  const list = [], p = f.proof, out = $("checks");
  out.textContent = "";
  if (!(window.crypto && crypto.subtle)) {
    check(list, null, "this browser offers Web Crypto only on https or localhost pages: open the page there to check the proof here");
    document.body.dataset.verified = "unavailable";
    return;
  }
  try {
    const st = await getJson(`/v1/markets/${S.market}/epochs/${p.epochId}`);
    const batch = st.batches.find(b => b.index === p.batchIndex);
    check(list, !!batch && batch.cid === p.batchCid, `batch ${p.batchIndex} of epoch ${p.epochId} is ${p.batchCid}`);
    const ids = [];
    let doc = null;
    for (let i = 1; i <= p.batchIndex; i++) {
      const b = st.batches.find(x => x.index === i);
      const r = await fetch(base + `/v1/markets/${S.market}/epochs/${p.epochId}/batches/${i}/document`, { cache: "no-store" });
      if (!r.ok || !b) { check(list, false, `batch ${i}: its document could not be fetched (HTTP ${r.status})`); throw new Stop(); }
      const bytes = new Uint8Array(await r.arrayBuffer());
      const m = await bytesMatchCid(b.cid, bytes);
      check(list, m, m === null ? `batch ${i}: ${bytes.length} bytes; ${b.cid} is not a raw CID, its bytes cannot be hashed to it here`
        : `batch ${i}: ${bytes.length} bytes ${m ? "hash" : "do NOT hash"} (sha-256) to its CID ${b.cid}`);
      doc = JSON.parse(new TextDecoder().decode(bytes));
      if (!Array.isArray(doc.submissionIDs)) { check(list, false, `batch ${i} is not a batch document`); throw new Stop(); }
      ids.push(...doc.submissionIDs);
    }
    check(list, ids[p.leafIndex] === p.submissionId, `the documents list ${p.submissionId} as leaf ${p.leafIndex} of ${ids.length}`);
    check(list, String(doc.roothash).toLowerCase() === p.roothash.toLowerCase(), `batch ${p.batchIndex}'s document carries the roothash ${p.roothash}`);
    const enc = new TextEncoder();
    const leaves = await Promise.all(ids.map(id => sha256(enc.encode(id))));
    const fromDocs = keccak(await treeRoot(leaves));
    check(list, fromDocs === p.roothash.toLowerCase(), `the tree rebuilt from ${ids.length} sha-256 leaves has the published root ${fromDocs}`);
    const fromPath = keccak(await rootFromPath(await sha256(enc.encode(p.submissionId)), p.leafIndex, p.siblings));
    check(list, p.siblings.length === 32 && fromPath === p.roothash.toLowerCase(), `the proof's ${p.siblings.length} siblings lead from the leaf to ${fromPath}`);
  } catch (err) {
    if (!(err instanceof Stop)) check(list, false, "the check stopped: " + err.message);
  }
  const failed = list.some(c => c.ok === false);
  const anchored = f.anchor && f.anchor.txHash;
  $("checks").insertAdjacentHTML("beforeend", `<li class="${failed ? "fail" : "ok"}" id="verdict">${failed
    ? "the proof does NOT hold against these bytes"
    : "the proof holds against the batch bytes" + (anchored ? "; the roothash is on chain in " + txLink(f.anchor.txHash) : " (not anchored yet)")}</li>`);
  document.body.dataset.verified = failed ? "failed" : "ok";
}
async function lookup(epoch, id) {
  const out = $("fate");
  out.className = "panel";
  $("checks").textContent = "";
  delete document.body.dataset.verified;
  try {
    const f = await getJson(`/v1/markets/${S.market}/epochs/${encodeURIComponent(epoch)}/submissions/${encodeURIComponent(id)}`);
    let text = `<span class="${esc(f.fate)}" id="fate-word">${esc(f.fate)}</span>: ${esc(f.message)}\nproject ${esc(f.projectId)}, slot ${f.slotId}, verified ${new Date(f.at_ms).toISOString()}`;
    if (f.reason) text += `\nreason ${esc(f.reason)}${f.detail ? " (" + esc(f.detail) + ")" : ""}`;
    if (f.proof) text += `\nbatch ${f.proof.batchIndex} ${cidLink(f.proof.batchCid)}, leaf ${f.proof.leafIndex}, roothash <span class="mono">${esc(f.proof.roothash)}</span>` +
      `\nanchored in ${txLink(f.anchor && f.anchor.txHash)} (block ${f.anchor && f.anchor.block != null ? f.anchor.block : "–"})`;
    out.innerHTML = text;
    if (f.proof) await verifyInBrowser(f);
  } catch (err) {
    out.innerHTML = `<span class="rejected" id="fate-word">error</span>: ${esc(err.message)}`;
  }
}
$("lookup").onsubmit = ev => {
  ev.preventDefault();
  lookup($("q-epoch").value.trim(), $("q-id").value.trim());
};

// ---------------------------------------------------------------- start

(async () => {
  try {
    S.market = (await getJson("/v1/markets")).markets[0];
    $("market").textContent = S.market;
    // The first summary (poll retries on its own until one arrives).
    await new Promise(resolve => { S.rendered = resolve; poll(); });
    // The newest day's rewards, when there are any, before the page says it is ready.
    if (S.rewards.pending) await S.rewards.pending;
    const q = new URLSearchParams(location.search);
    if (q.get("epoch")) await showEpoch(q.get("epoch"));
    if (q.get("epoch") && q.get("id")) {
      $("q-epoch").value = q.get("epoch");
      $("q-id").value = q.get("id");
      await lookup(q.get("epoch"), q.get("id"));
    }
    document.body.dataset.ready = "1";
  } catch (err) {
    setLive("offline", "error: " + err.message);
    $("epochs").innerHTML = `<tr><td colspan="7">error: ${esc(err.message)}</td></tr>`;
  }
})();
