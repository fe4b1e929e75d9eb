// The installer's page: fetches JSON from /api and follows the door live (server-sent events).
"use strict";

const $ = (id) => document.getElementById(id);
const fmt = (x) => (x === null || x === undefined ? "–" : typeof x === "number" ? x.toFixed(2) : String(x));

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401) { location.href = "/login"; throw new Error("log in first"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

function say(id, text, ok) {
  const el = $(id);
  el.textContent = text;
  el.className = "msg " + (ok ? "ok" : "error");
}

// --- status ---------------------------------------------------------------------------------------
function showStatus(s) {
  if (!s.running) { $("conn").textContent = "the door does not answer: " + (s.error || ""); $("conn").className = "error"; return; }
  $("conn").textContent = "live"; $("conn").className = "ok";
  $("st-lock").textContent = s.lock;
  $("st-door").textContent = s.door;
  $("st-alarms").textContent = s.alarms && s.alarms.length ? s.alarms.join(", ") : "none";
  const lo = s.lockout || {};
  $("st-lockout").textContent = lo.locked_out ? `locked out for ${Math.ceil(lo.remaining_seconds)} s (${lo.consecutive_failures} failure(s))`
                                              : `no (${lo.consecutive_failures || 0} consecutive failure(s))`;
  $("st-camera").textContent = (s.devices || {}).camera;
  $("st-microphone").textContent = (s.devices || {}).microphone;
  $("st-models").textContent = s.models;
  $("st-enrolled").textContent = s.enrolled;
  $("st-suspended").textContent = s.suspended ? `suspended: enrolling ${s.enrolling || ""}` : "deciding";
  // A page opened later gets the recent history from the status snapshot.
  for (const d of s.last_decisions || []) addDecision(d);
}

function addDecision(d) {
  const body = $("decisions").tBodies[0];
  if (body.querySelector(`tr[data-attempt="${d.attempt}"]`)) return;
  const row = body.insertRow(0);
  row.dataset.attempt = d.attempt;
  row.className = "new decision";
  cell(row, d.attempt);
  cell(row, d.decision, d.decision);
  cell(row, d.person || "–");
  cell(row, d.reason);
  cell(row, fmt(d.face)); cell(row, fmt(d.voice)); cell(row, fmt(d.fused)); cell(row, fmt(d.liveness));
  cell(row, d.latency_ms === undefined || d.latency_ms === null ? "–" : `${d.latency_ms} ms`);
  while (body.rows.length > 50) body.deleteRow(-1);
}

function statusPage() {
  const events = new EventSource("/api/events");
  events.addEventListener("status", (e) => showStatus(JSON.parse(e.data)));
  events.addEventListener("decision", (e) => addDecision(JSON.parse(e.data)));
  events.onerror = () => {
    $("conn").textContent = "reconnecting…"; $("conn").className = "muted";
    api("/api/status").catch(() => {});  // an ended session sends the page to the login
  };
}

// --- people ---------------------------------------------------------------------------------------
async function loadPeople() {
  const { people } = await api("/api/people");
  const body = $("people").tBodies[0];
  body.replaceChildren();
  for (const p of people) {
    const row = body.insertRow();
    row.dataset.name = p.name;
    cell(row, p.name); cell(row, p.face_samples); cell(row, p.voice_samples); cell(row, p.digit_recordings ?? 0);
    const button = document.createElement("button");
    button.textContent = "Delete";
    button.className = "delete";
    button.addEventListener("click", async () => {
      if (!confirm(`Delete ${p.name}? Their record and key are destroyed; this cannot be undone.`)) return;
      try {
        await api(`/api/people/${encodeURIComponent(p.name)}/delete`, { method: "POST" });
        say("people-msg", `deleted ${p.name}`, true);
      } catch (err) { say("people-msg", err.message, false); }
      loadPeople();
    });
    row.insertCell().append(button);
  }
  if (!people.length) cell(body.insertRow(), "nobody is enrolled").colSpan = 4;
}

async function readEvents(response, onEvent) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
      const event = (block.match(/^event: (.*)$/m) || [])[1];
      const data = (block.match(/^data: (.*)$/m) || [])[1];
      if (event && data) onEvent(event, JSON.parse(data));
    }
  }
}

function peoplePage() {
  loadPeople().catch((err) => say("people-msg", err.message, false));
  $("enrol-files").addEventListener("submit", async (e) => {
    e.preventDefault();
    say("people-msg", "enrolling…", true);
    try {
      const r = await api("/api/people", { method: "POST", body: new FormData(e.target) });
      say("people-msg", `enrolled ${r.name}: ${r.face_samples} face sample(s), ${r.voice_samples} voice sample(s), ${r.digit_recordings ?? 0} digit recording(s)`, true);
      e.target.reset();
    } catch (err) { say("people-msg", err.message, false); }
    loadPeople();
  });
  let abort = null;
  $("enrol-live-cancel").addEventListener("click", () => abort && abort.abort());
  $("enrol-live").addEventListener("submit", async (e) => {
    e.preventDefault();
    const list = $("live-progress");
    list.replaceChildren();
    abort = new AbortController();
    $("enrol-live-cancel").hidden = false;
    try {
      const response = await fetch("/api/people/live", {
        method: "POST", signal: abort.signal, headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: $("live-name").value, samples: Number($("live-samples").value) }) });
      if (!response.ok) throw new Error((await response.json()).error.message);
      await readEvents(response, (event, data) => {
        if (event === "progress") {
          const item = document.createElement("li");
          item.textContent = `[${data.step}/${data.of}] ${data.prompt}`;
          list.append(item);
        } else if (event === "done") {
          say("people-msg", `enrolled ${data.name}: ${data.face_samples} face sample(s), ${data.voice_samples} voice sample(s), ${data.digit_recordings ?? 0} digit recording(s)`, true);
        } else if (event === "error") {
          say("people-msg", data.message, false);
        }
      });
    } catch (err) { say("people-msg", err.name === "AbortError" ? "live enrolment cancelled" : err.message, false); }
    $("enrol-live-cancel").hidden = true;
    loadPeople();
  });
}

// --- lockout --------------------------------------------------------------------------------------
async function loadLockout() {
  const lo = await api("/api/lockout");
  $("lo-locked").textContent = lo.locked_out ? "yes" : "no";
  $("lo-remaining").textContent = `${Math.ceil(lo.remaining_seconds)} s`;
  $("lo-failures").textContent = lo.consecutive_failures;
}

function lockoutPage() {
  loadLockout().catch((err) => say("lockout-msg", err.message, false));
  $("clear-lockout").addEventListener("click", async () => {
    try {
      await api("/api/lockout/clear", { method: "POST" });
      say("lockout-msg", "lockout cleared", true);
    } catch (err) { say("lockout-msg", err.message, false); }
    loadLockout();
  });
}

// --- calibration ----------------------------------------------------------------------------------
function fill(list, entries) {
  for (const [key, value] of entries) {
    const dt = document.createElement("dt"); dt.textContent = key;
    const dd = document.createElement("dd"); dd.textContent = typeof value === "object" && value !== null ? JSON.stringify(value) : fmt(value);
    list.append(dt, dd);
  }
}

async function calibrationPage() {
  const c = await api("/api/calibration");
  const cal = c.calibration || {};
  const pct = (x) => (typeof x === "number" ? `${(100 * x).toFixed(2)} %` : x);
  const fnmr = Array.isArray(cal.fnmr_ci) && cal.fnmr_ci.length === 2
    ? `${pct(cal.expected_fnmr)} (95 % CI ${pct(cal.fnmr_ci[0])} - ${pct(cal.fnmr_ci[1])})` : pct(cal.expected_fnmr);
  // The same people enrolled from n sentences and from one, on the same attempts, at this threshold.
  const byEnrolment = Object.entries(cal.door_one_to_one_by_enrol_utterances || {}).flatMap(([n, e]) => {
    const several = e[`enrolled_from_${n}`], alone = e.enrolled_from_1;
    return several && alone && several.n_genuine
      ? [[`false rejects, people enrolled from ${n} sentences`,
          `${pct(several.fnmr)} (the same ${several.people} people from one: ${pct(alone.fnmr)})`]] : [];
  });
  // Why the door refused the genuine attempts of the fit at this threshold, commonest first.
  const reasonText = {voice_mismatch: "a voice that alone points elsewhere (min_modality_llr)",
                      face_mismatch: "a face that alone points elsewhere (min_modality_llr)",
                      no_match: "under the threshold", input: "no usable face or speech"};
  const door = cal.door_one_to_one || {};
  const reasons = Object.entries(door.false_reject_reasons || {})
    .sort((a, b) => b[1] - a[1]).map(([reason, count]) => `${count} ${reasonText[reason] || reason}`);
  // The door's rule refuses a little more than the fused score alone (expected FNMR): the per-modality rule.
  const why = reasons.length ? [["refused by the door's rule", `${pct(door.fnmr)}: ${reasons.join(", ")}`]] : [];
  fill($("cal-point"), [
    ["threshold (fused LLR)", c.config.threshold ?? cal.threshold ?? "built-in default"],
    ["runner-up margin", c.config.margin ?? cal.margin ?? "built-in default"],
    ["target FMR", typeof cal.target_fmr === "number" ? cal.target_fmr.toExponential(0) : cal.target_fmr],
    ["expected FNMR", fnmr], ...why, ...byEnrolment, ["calibrated", cal.created],
    ["face / voice weight", `${c.config.face_weight} / ${c.config.voice_weight}`],
    ["missing modality", c.config.missing_modality], ["calibration file", c.calibration_file]]);
  $("cal-note").textContent = c.calibration_note || "";
  if (c.report) {
    fill($("cal-report"), [["fused EER", pct(c.report.fused_eer)], ["face EER", pct(c.report.face_eer)],
                           ["voice EER", pct(c.report.voice_eer)],
                           ...Object.entries(c.report.fnmr_at_fmr || {}).map(([fmr, fnmr]) => [`fused FNMR at FMR ${fmr}`, pct(fnmr)])]);
    if (c.report.det) { $("det").src = "/api/det.png"; $("det").hidden = false; }
  } else {
    $("report-note").textContent = c.report_note || "no evaluation report configured (web.report_dir)";
  }
}

// --- start ----------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  const link = $("nav-" + page);
  if (link) link.className = "current";
  if (page === "login" && new URLSearchParams(location.search).has("failed")) $("login-failed").hidden = false;
  ({ status: statusPage, people: peoplePage, lockout: lockoutPage, calibration: calibrationPage }[page] || (() => {}))();
});
