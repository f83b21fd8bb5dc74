// The hub's web terminal page: sign in, list agents and past sessions, drive one xterm.js terminal.
// Protocol on /ws/term: text frames are JSON control messages (open, attach, resize, ack, hangup | ready, exit);
// binary frames are raw bytes (keys up, output down). The page acks what xterm has drawn, so the hub
// never runs far ahead of the screen; after a blip or a reload it reattaches from the offset it holds.
"use strict";

const $ = (id) => document.getElementById(id);
const KEPT = "bridge.term";  // sessionStorage: the live session to reattach to after a reload
const REATTACH_FOR_MS = 120000;
const enc = new TextEncoder();

function show(id) {
  for (const v of ["signin", "home", "term-view"]) $(v).hidden = v !== id;
}

async function api(path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const body = await response.json().catch(() => ({}));
  return { status: response.status, body };
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function button(td, label, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.onclick = onclick;
  td.append(b);
  return b;
}

function ago(seconds) {
  return seconds ? `${Math.max(0, Math.round(Date.now() / 1000 - seconds))} s ago` : "-";
}

async function home() {
  const me = await api("/web/me");
  if (me.status === 401) return show("signin");
  const { user, role, workspaces, shell, exec, agents } = me.body;
  $("who").textContent = `${user} (${role})`;
  $("signout").hidden = false;
  $("no-terminal").hidden = shell || exec;
  $("launch").hidden = !(shell || exec);
  $("workspaces").replaceChildren(...workspaces.map((w) => new Option(w, w)));
  if (workspaces.length && !$("workspace").value) $("workspace").value = workspaces[0];
  const rows = $("agents").tBodies[0];
  rows.replaceChildren();
  for (const a of agents) {
    const row = rows.insertRow();
    cell(row, a.name);
    cell(row, a.online ? "online" : "offline", a.online ? "online" : "offline");
    cell(row, a.online ? ago(a.last_heartbeat) : "-");
    const td = row.insertCell();
    if (a.online && (shell || exec)) button(td, "Open terminal", () => openTerminal(a.name));
  }
  await listRecordings();
  show("home");
}

async function listRecordings() {
  const { body } = await api("/web/recordings");
  const rows = $("recordings").tBodies[0];
  rows.replaceChildren();
  for (const r of body.recordings || []) {
    const row = rows.insertRow();
    cell(row, new Date(r.started * 1000).toLocaleString());
    cell(row, r.user);
    cell(row, r.agent);
    cell(row, r.command);
    button(row.insertCell(), "Play", () => replay(r));
  }
}

// -- one terminal on screen ------------------------------------------------------------------------

let current = null;  // {term, fit, ws, ...} of the terminal on screen

function makeTerminal(title) {
  closeTerminal();
  show("term-view");
  $("term-title").textContent = title;
  const term = new Terminal({ fontFamily: "ui-monospace, DejaVu Sans Mono, monospace", fontSize: 14,
                              scrollback: 5000, cursorBlink: false });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open($("terminal"));
  fit.fit();
  current = { term, fit, ws: null, closed: false };
  window.bridgeTerm = term;  // for tests and the bench, which read the screen
  window.bridgeView = current;
  return current;
}

function closeTerminal() {
  if (!current) return;
  current.closed = true;
  if (current.ws && current.ws.readyState === WebSocket.OPEN) current.ws.send(JSON.stringify({ type: "hangup" }));
  if (current.ws) current.ws.close();
  if (current.timer) clearTimeout(current.timer);
  if (current.onWindowResize) window.removeEventListener("resize", current.onWindowResize);
  current.term.dispose();
  current = null;
}

function openTerminal(agent) {
  const command = $("command").value.trim() || null;
  const workspace = $("workspace").value.trim() || null;
  const t = makeTerminal(`${agent}: ${command || "shell"}`);
  connect(t, { type: "open", agent, workspace, command });
}

function reattach(kept) {
  const t = makeTerminal(kept.title);
  t.sessionId = kept.session;
  connect(t, { type: "attach", session: kept.session, offset: 0 });
}

// Each output message goes to xterm.js as it comes (xterm.js queues writes and parses them in time
// slices between frames); its callback counts the bytes drawn. An ack every quarter of the window
// the hub announces keeps the hub sending while the page still parses, instead of a stop-and-wait
// per window, and costs a keystroke's echo no extra message.
function connect(t, first) {
  const ws = new WebSocket(`wss://${location.host}/ws/term`);
  ws.binaryType = "arraybuffer";
  t.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify({ ...first, cols: t.term.cols, rows: t.term.rows }));
    $("term-state").textContent = "connected";
  };
  ws.onmessage = (event) => {
    if (typeof event.data !== "string") return output(t, ws, new Uint8Array(event.data));
    const message = JSON.parse(event.data);
    if (message.type === "ready") {
      t.sessionId = message.session;
      t.drawn = t.acked = message.offset;
      t.ackEvery = message.window / 4;
      t.since = null;
      sessionStorage.setItem(KEPT, JSON.stringify({ session: message.session, title: $("term-title").textContent }));
    } else if (message.type === "exit") {
      t.exited = true;
      sessionStorage.removeItem(KEPT);
      $("term-state").textContent = `exited ${message.code}`;
    }
  };
  ws.onclose = (event) => closed(t, ws, event);
  if (!t.wired) wire(t);
}

function output(t, ws, data) {
  t.term.write(data, () => {
    t.drawn += data.length;
    if (t.ws !== ws || ws.readyState !== WebSocket.OPEN || t.drawn - t.acked < t.ackEvery) return;
    t.acked = t.drawn;
    ws.send(JSON.stringify({ type: "ack", offset: t.drawn }));
  });
}

function wire(t) {
  t.wired = true;
  t.term.onData((data) => send(t, enc.encode(data)));
  t.term.onBinary((data) => send(t, Uint8Array.from(data, (c) => c.charCodeAt(0))));
  t.term.onResize(({ cols, rows }) => {
    if (t.ws && t.ws.readyState === WebSocket.OPEN) t.ws.send(JSON.stringify({ type: "resize", cols, rows }));
  });
  // Shift+F6 leaves the terminal for the page (every other key goes to the shell): keyboard alone suffices
  t.term.attachCustomKeyEventHandler((e) => {
    if (e.type === "keydown" && e.shiftKey && e.key === "F6") { $("term-back").focus(); return false; }
    return true;
  });
  t.onWindowResize = () => t.fit.fit();
  window.addEventListener("resize", t.onWindowResize);
  t.term.focus();
}

function send(t, bytes) {
  if (t.ws && t.ws.readyState === WebSocket.OPEN) t.ws.send(bytes);
}

// A socket that drops while the shell lives is retried for two minutes, from the offset drawn.
function closed(t, ws, event) {
  if (t.closed || t.ws !== ws || t.exited) return;
  if (event.code === 4403 || event.code === 4404 || event.code === 4400 || event.code === 4503 || !t.sessionId) {
    sessionStorage.removeItem(KEPT);
    $("term-state").textContent = event.reason || "refused";
    return;
  }
  t.since = t.since || Date.now();
  if (Date.now() - t.since > REATTACH_FOR_MS) {
    $("term-state").textContent = "disconnected";
    return;
  }
  $("term-state").textContent = "reconnecting…";
  // from the offset drawn once xterm.js has parsed what it still holds (an empty write's callback)
  t.timer = setTimeout(() => t.term.write("", () => {
    if (!t.closed) connect(t, { type: "attach", session: t.sessionId, offset: t.drawn });
  }), 1000);
}

// -- replay of a recording in the browser ----------------------------------------------------------

async function replay(r) {
  const response = await fetch(`/web/recordings/${encodeURIComponent(r.name)}`, { credentials: "same-origin" });
  const lines = (await response.text()).split("\n").filter(Boolean);
  const t = makeTerminal(`replay: ${r.user}@${r.agent} ${r.command}`);
  $("term-state").textContent = "replaying";
  const events = lines.slice(1).map((line) => JSON.parse(line)).filter((e) => e[1] === "o");
  let last = 0;
  for (const [at, , data] of events) {
    await new Promise((done) => { t.timer = setTimeout(done, Math.min(at - last, 0.5) * 1000); });
    if (t.closed) return;
    t.term.write(data);
    last = at;
  }
  t.term.write("", () => { $("term-state").textContent = "replay finished"; });
}

// -- sign in and out -------------------------------------------------------------------------------

$("signin").onsubmit = async (event) => {
  event.preventDefault();
  const { status, body } = await api("/web/session", { method: "POST", headers: { "Content-Type": "application/json" },
                                                       body: JSON.stringify({ token: $("token").value }) });
  $("token").value = "";
  if (status !== 200) {
    $("signin-error").textContent = body.error || `sign-in failed (${status})`;
    return;
  }
  $("signin-error").textContent = "";
  home();
};

$("signout").onclick = async () => {
  closeTerminal();
  sessionStorage.removeItem(KEPT);
  await api("/web/session", { method: "DELETE" });
  $("signout").hidden = true;
  $("who").textContent = "";
  show("signin");
};

$("term-back").onclick = () => {
  closeTerminal();
  sessionStorage.removeItem(KEPT);
  home();
};

(async () => {
  const kept = JSON.parse(sessionStorage.getItem(KEPT) || "null");
  const me = await api("/web/me");
  if (me.status === 401) return show("signin");
  if (kept) return reattach(kept);
  home();
})();
