// Drives headless Chromium over the DevTools protocol for api/tests/status_page.rs. No packages:
// Node 22's fetch and WebSocket only. The Rust test sends one JSON command per line on stdin and
// reads one JSON answer per line on stdout; what the page showed is answered as plain facts and
// the test asserts on them. When stdin closes (the test ended or panicked) Chromium is stopped.
//
// Commands: {cmd:"open", url, width, height, shot?} (load, wait until the page says it is ready,
// screenshot of the whole page), {cmd:"facts"}, {cmd:"waitFor", js, ms} (until the expression is
// true), {cmd:"click", id}, {cmd:"tamper", pattern, find, replace} (answers
// to URLs matching pattern altered on their way to the page, as a lying cache would), {cmd:"hide", ms} (the tab hidden for ms, then shown again: status
// requests counted in each phase). Every answer carries the page's errors so far
// (uncaught exceptions, console.error, failed loads).
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const chromiumBin = process.env.CHROMIUM_BIN || "/usr/bin/chromium";
const profile = mkdtempSync(join(tmpdir(), "status-page-"));
const chrome = spawn(chromiumBin, [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
  "--no-default-browser-check", "--hide-scrollbars", "--force-device-scale-factor=1",
  "--disable-background-networking", "--remote-debugging-port=0", `--user-data-dir=${profile}`,
  "about:blank",
], { stdio: ["ignore", "ignore", "pipe"] });
let chromeLog = "";
chrome.stderr.on("data", d => { chromeLog = (chromeLog + d).slice(-4000); });
function stop(code) {
  try { chrome.kill("SIGKILL"); } catch (_) { /* gone */ }
  try { rmSync(profile, { recursive: true, force: true }); } catch (_) { /* busy */ }
  process.exit(code);
}
const sleep = ms => new Promise(r => setTimeout(r, ms));

async function devtoolsPort() {
  const file = join(profile, "DevToolsActivePort");
  for (let i = 0; i < 300; i++) {
    if (existsSync(file)) {
      const port = readFileSync(file, "utf8").split("\n")[0].trim();
      if (port) return port;
    }
    if (chrome.exitCode != null) throw new Error("chromium exited: " + chromeLog);
    await sleep(100);
  }
  throw new Error("chromium did not open its DevTools port: " + chromeLog);
}

const port = await devtoolsPort();
const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json();
const pageTarget = targets.find(t => t.type === "page");
const ws = new WebSocket(pageTarget.webSocketDebuggerUrl);
await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });

let nextId = 1;
const waiting = new Map();
const errors = [];
let statusRequests = 0;
ws.onmessage = ev => {
  const m = JSON.parse(ev.data);
  if (m.id && waiting.has(m.id)) {
    const { resolve, reject } = waiting.get(m.id);
    waiting.delete(m.id);
    if (m.error) reject(new Error(JSON.stringify(m.error))); else resolve(m.result);
    return;
  }
  if (m.method === "Runtime.exceptionThrown") {
    const d = m.params.exceptionDetails;
    errors.push("exception: " + ((d.exception && d.exception.description) || d.text));
  } else if (m.method === "Runtime.consoleAPICalled" && ["error", "assert"].includes(m.params.type)) {
    errors.push("console." + m.params.type + ": " + m.params.args.map(a => a.value ?? a.description).join(" "));
  } else if (m.method === "Log.entryAdded" && m.params.entry.level === "error") {
    errors.push("log: " + m.params.entry.text + (m.params.entry.url ? " " + m.params.entry.url : ""));
  } else if (m.method === "Fetch.requestPaused") {
    fulfillTampered(m.params);
  } else if (m.method === "Network.requestWillBeSent" && /\/v1\/markets\/[^/]+\/status$/.test(m.params.request.url)) {
    statusRequests += 1;
  }
};
function send(method, params = {}) {
  const id = nextId++;
  ws.send(JSON.stringify({ id, method, params }));
  return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
}
async function evaluate(expression) {
  const r = await send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
  if (r.exceptionDetails) throw new Error("evaluate: " + JSON.stringify(r.exceptionDetails));
  return r.result.value;
}
async function waitFor(expression, ms) {
  const until = Date.now() + ms;
  for (;;) {
    if (await evaluate(`Boolean(${expression})`)) return true;
    if (Date.now() > until) return false;
    await sleep(100);
  }
}

// A cache or proxy that lies: the real answer with `tamper.find` replaced by `tamper.replace`.
let tamper = null;
async function fulfillTampered(p) {
  try {
    const r = await fetch(p.request.url);
    const body = Buffer.from((await r.text()).replace(tamper.find, tamper.replace));
    await send("Fetch.fulfillRequest", {
      requestId: p.requestId, responseCode: r.status, body: body.toString("base64"),
      responseHeaders: [{ name: "content-type", value: r.headers.get("content-type") || "application/json" }],
    });
  } catch (err) {
    errors.push("tampering proxy: " + err);
    await send("Fetch.continueRequest", { requestId: p.requestId });
  }
}

// What the page shows, as plain values. Pixels: how many of each chart's canvas pixels are drawn,
// and how many have the colour of the accepted layer and of the first rejection reason.
const FACTS = `(() => {
  const t = id => (document.getElementById(id)?.textContent ?? "").replace(/\\s+/g, " ").trim();
  const px = sel => {
    const c = document.querySelector(sel + " canvas");
    if (!c) return null;
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let drawn = 0, accepted = 0, reason = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (d[i + 3] === 0) continue;
      drawn++;
      if (d[i] === 0x32 && d[i + 1] === 0xd5 && d[i + 2] === 0x83) accepted++;
      if (d[i] === 0xb4 && d[i + 1] === 0x23 && d[i + 2] === 0x18) reason++;
    }
    return { width: c.getBoundingClientRect().width, drawn, accepted, reason };
  };
  return {
    ready: document.body.dataset.ready ?? null,
    verified: document.body.dataset.verified ?? null,
    live: document.getElementById("live").dataset.state,
    liveText: t("live"),
    market: t("market"),
    head: t("head"), headAge: t("head-age"),
    latest: t("latest"), latestAge: t("latest-age"),
    lag: t("lag"), lagDetail: t("lag-detail"),
    failures: t("failures"), failuresDetail: t("failures-detail"),
    dlq: t("dlq"), ingress: t("ingress"), legend: t("legend-counts"),
    pageLabel: t("page-label"), detailTitle: t("detail-title"), detail: t("detail"),
    fate: t("fate-word"), fateText: t("fate"), verdict: t("verdict"),
    rewardsHidden: document.getElementById("rewards-section").hidden,
    rewardsLabel: t("rewards-label"), rewardsSummary: t("rewards-summary"),
    rewardsRows: [...document.querySelectorAll("#rewards tr[data-slot]")]
      .map(r => [...r.cells].map(c => c.textContent.replace(/\\s+/g, " ").trim())),
    rewardsLaterDisabled: document.getElementById("rewards-later").disabled,
    rewardsEarlierDisabled: document.getElementById("rewards-earlier").disabled,
    rows: [...document.querySelectorAll("#epochs tr.epoch")].map(r => Number(r.dataset.epoch)),
    checks: [...document.querySelectorAll("#checks li[data-ok]")].map(l => ({ ok: l.dataset.ok, text: l.textContent.trim() })),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    latency: px("#chart-latency"), counts: px("#chart-counts"),
    olderDisabled: document.getElementById("older").disabled,
    newerDisabled: document.getElementById("newer").disabled,
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    overflowing: [...document.querySelectorAll("body *")]
      .filter(el => !el.closest(".scroll") && el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX === "visible" && el.clientWidth > 0)
      .slice(0, 8)
      .map(el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + " " + el.scrollWidth + ">" + el.clientWidth),
    // Elements reaching past the emulated screen (the innermost few), to say what overflows.
    tooWide: [...document.querySelectorAll("body *")]
      .filter(el => !(el.parentElement && el.parentElement.closest(".scroll")) && el.getBoundingClientRect().right > (window.__screenWidth || 1e9) + 1 &&
        ![...el.children].some(ch => ch.getBoundingClientRect().right > (window.__screenWidth || 1e9) + 1))
      .slice(0, 8)
      .map(el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "") + " " + Math.round(el.getBoundingClientRect().right)),
  };
})()`;

async function facts() {
  return { ...(await evaluate(FACTS)), statusRequests, errors: [...errors] };
}

async function run(c) {
  switch (c.cmd) {
    case "open": {
      await send("Emulation.setDeviceMetricsOverride", {
        width: c.width, height: c.height || 900, deviceScaleFactor: 1, mobile: c.width < 600,
      });
      await send("Page.navigate", { url: c.url });
      if (!(await waitFor(`document.readyState === "complete" && document.body && document.body.dataset.ready === "1"`, 30000))) {
        return { timedOut: "the page never said it was ready", ...(await facts()) };
      }
      await evaluate(`window.__screenWidth = ${Number(c.width)}`);
      // Let the charts settle at this width (a resize redraws them).
      await sleep(500);
      if (c.shot) {
        const m = await send("Page.getLayoutMetrics");
        const size = m.cssContentSize || m.contentSize;
        const shot = await send("Page.captureScreenshot", {
          format: "png", captureBeyondViewport: true,
          clip: { x: 0, y: 0, width: Math.ceil(size.width), height: Math.ceil(size.height), scale: 1 },
        });
        writeFileSync(c.shot, Buffer.from(shot.data, "base64"));
      }
      return facts();
    }
    case "facts":
      return facts();
    case "waitFor":
      return { met: await waitFor(c.js, c.ms), ...(await facts()) };
    case "tamper":
      tamper = { find: c.find, replace: c.replace };
      await send("Fetch.enable", { patterns: [{ urlPattern: c.pattern, requestStage: "Request" }] });
      return facts();
    case "click":
      await evaluate(`document.getElementById(${JSON.stringify(c.id)}).click()`);
      await sleep(c.ms || 800);
      return facts();
    case "hide": {
      const before = statusRequests;
      await evaluate(`(() => {
        Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
        Object.defineProperty(document, "hidden", { configurable: true, get: () => true });
        document.dispatchEvent(new Event("visibilitychange"));
      })()`);
      await sleep(c.ms);
      const hidden = { requests: statusRequests - before, live: await evaluate(`document.getElementById("live").dataset.state`) };
      const shownAt = statusRequests;
      await evaluate(`(() => {
        delete document.visibilityState;
        delete document.hidden;
        document.dispatchEvent(new Event("visibilitychange"));
      })()`);
      await waitFor(`document.getElementById("live").dataset.state === "live"`, 5000);
      await sleep(300);
      return { hidden, shownRequests: statusRequests - shownAt, ...(await facts()) };
    }
    default:
      throw new Error("unknown command " + c.cmd);
  }
}

await send("Runtime.enable");
await send("Log.enable");
await send("Network.enable");
await send("Page.enable");
console.log(JSON.stringify({ started: true, chromium: (await send("Browser.getVersion")).product }));

const lines = createInterface({ input: process.stdin });
lines.on("close", () => stop(0));
for await (const line of lines) {
  if (!line.trim()) continue;
  try {
    console.log(JSON.stringify(await run(JSON.parse(line))));
  } catch (err) {
    console.log(JSON.stringify({ failed: String(err && err.stack || err), errors }));
  }
}
