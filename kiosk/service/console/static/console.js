// Operator console: polls /api/state, shows the applicant's prompt in their language, the live
// preview (or the photo under review), and sends Accept / Retake / Go.
//
// The preview heals itself: Chromium fires no `error` on an <img> whose MJPEG stream was cut (a
// service restart), so the page reopens the stream whenever /api/state comes back after a failed
// poll, or names another service start (`boot`). A lost camera blanks the picture and the figures.
"use strict";

const POLL_MS = 250;
const $ = (id) => document.getElementById(id);
const store = window.localStorage;
// Plain words for the checks the operator sees (the codes stay in the details).
const LABELS = {
  eyes_closed: "Eyes open", mouth_open: "Mouth closed", veil: "Face uncovered",
  framing: "Framing", pose: "Head straight", exposure: "Exposure", sharpness: "Sharpness",
  background: "Background", head_covering: "Head uncovered", resolution: "Resolution",
};
const FORENSIC_LABELS = {
  jpeg: "earlier JPEG compression (re-photographed or injected image?)",
  ela: "edited regions (error level analysis)",
  splice: "spliced region",
  morph: "morphed face (two people blended)",
  sr: "super-resolution reference",
};
let current = null;
let messages = { default: "en", names: { en: "English" }, messages: { en: {} } };
let boot = null;
let lostContact = false;
let previewWanted = false;
let lastBeep = null;
let audio = null;

function text(id, value) {
  const el = $(id);
  if (el.textContent !== value) el.textContent = value;
}

function language() {
  return store.getItem("kiosk.language") || messages.default;
}

function translate(key, fallback) {
  const table = messages.messages[language()] || {};
  return table[key] || (messages.messages.en || {})[key] || fallback;
}

async function loadMessages() {
  try {
    const response = await fetch("/api/messages", { cache: "no-store" });
    messages = await response.json();
  } catch (error) {
    return;
  }
  const select = $("language");
  select.replaceChildren();
  for (const [code, name] of Object.entries(messages.names)) {
    select.add(new Option(name, code, false, code === language()));
  }
}

// ---- preview: open, reopen, blank ---------------------------------------------------------------
function setPreview(on) {
  const img = $("preview");
  if (on && (!previewWanted || !img.getAttribute("src"))) {
    img.src = "/preview.mjpg?" + Date.now();
  } else if (!on && img.getAttribute("src")) {
    img.removeAttribute("src"); // also closes the stream: a signed-out page stops retrying
  }
  previewWanted = on;
}

function reopenPreview() {
  if (previewWanted) $("preview").src = "/preview.mjpg?" + Date.now();
}

// ---- what the operator reads ---------------------------------------------------------------------
function showChecks(verdict) {
  const body = $("checks").tBodies[0];
  body.replaceChildren();
  if (!verdict) return;
  const rows = [["decision", verdict.decision + (verdict.reasons.length ? ": " + verdict.reasons.join(", ") : ""),
                 verdict.decision === "accept"]];
  for (const [name, r] of Object.entries(verdict.checks || {})) {
    const label = LABELS[name] ? `${LABELS[name]} (${name})` : name;
    const score = typeof r.score === "number" ? ` ${r.score.toFixed(3)} / ${Number(r.threshold).toFixed(3)}` : "";
    rows.push([label, (r.failed ? "no" : "yes") + score, !r.failed]);
  }
  for (const [name, value, ok] of rows) {
    const tr = body.insertRow();
    tr.insertCell().textContent = name;
    const cell = tr.insertCell();
    cell.textContent = value;
    cell.className = ok ? "pass" : "fail";
  }
}

function forensicSummary(report) {
  // -> {kind: "ok" | "flagged" | "error" | "none", lines: [...], flagged: [...]}
  if (!report || report.status === "not installed") return { kind: "none", lines: [], flagged: [] };
  const lines = [], flagged = [], errors = [];
  for (const [key, value] of Object.entries(report)) {
    const label = FORENSIC_LABELS[key] || key;
    if (value && typeof value === "object" && "error" in value) {
      errors.push(key);
      lines.push(`${label}: could not run — ${value.error}`);
    } else if (value && typeof value === "object" && "flagged" in value) {
      if (value.flagged) flagged.push(key);
      const score = typeof value.score === "number" ? ` (${value.score.toFixed(3)} / ${Number(value.threshold).toFixed(3)})` : "";
      lines.push(`${label}: ${value.flagged ? "FLAGGED" : "no sign"}${score}`);
    } else if (value && typeof value === "object") {
      const parts = Object.entries(value).filter(([, v]) => typeof v !== "object").map(([k, v]) => `${k} ${v}`);
      lines.push(`${label}: ${parts.join(", ") || "ran"}`);
    }
  }
  const kind = flagged.length ? "flagged" : errors.length ? "error" : "ok";
  return { kind, lines, flagged };
}

function showForensics(report, review) {
  const summary = forensicSummary(report);
  text("forensics", summary.lines.join("\n") || (report ? "forensics: not installed" : "—"));
  const banner = $("forensic-banner");
  banner.hidden = !review || summary.kind === "none";
  $("accept").classList.toggle("caution", review && summary.kind === "flagged");
  text("accept-label", review && summary.kind === "flagged" ? "Accept anyway" : "Accept");
  if (banner.hidden) return;
  const key = summary.kind + summary.lines.join("|");
  if (banner.dataset.key === key) return;
  banner.dataset.key = key;
  banner.className = "banner " + summary.kind;
  const headline = {
    flagged: `⚠ Forensic warning: ${summary.flagged.map((k) => FORENSIC_LABELS[k] || k).join("; ")}`,
    error: "⚠ A forensic check could not run",
    ok: "✓ Forensics: no sign of manipulation",
  }[summary.kind];
  const details = document.createElement("details");
  const title = document.createElement("summary");
  title.textContent = headline;
  const list = document.createElement("ul");
  for (const line of summary.lines) list.appendChild(document.createElement("li")).textContent = line;
  details.append(title, list);
  banner.replaceChildren(details);
}

function promptText(s) {
  const key = s.prompt_key || "";
  let words = translate(key, s.prompt);
  if (key === "state.countdown" && s.countdown_s !== null) words += ` ${Math.ceil(s.countdown_s)}`;
  return words;
}

function showCountdown(s) {
  const el = $("countdown");
  const on = s.state === "ready" && s.countdown_s !== null && s.countdown_s > 0;
  el.hidden = !on;
  if (!on) { lastBeep = null; return; }
  const second = Math.ceil(s.countdown_s);
  text("countdown", String(second));
  if (s.console.countdown_sound && second !== lastBeep) beep(second === 1 ? 880 : 660);
  lastBeep = second;
}

function beep(frequency) {
  try {
    audio = audio || new AudioContext();
    const tone = audio.createOscillator(), gain = audio.createGain();
    tone.frequency.value = frequency;
    gain.gain.value = 0.15;
    tone.connect(gain).connect(audio.destination);
    tone.start();
    tone.stop(audio.currentTime + 0.12);
  } catch (error) { /* no audio device: the number on screen is the countdown */ }
}

function operatorNotice(s) {
  if (s.token_required && !s.authorized) {
    return "Operator not signed in: open /login?token=…&operator=<your name> on this screen.";
  }
  if (!s.camera.ok) return `Camera: ${s.camera.message}`;
  if (s.state === "checks_unavailable") return `Checks unavailable: ${s.message}`;
  if (s.store && s.store.refused) return `Photo not saved: ${s.store.refused} — Accept (A) tries again`;
  if (s.store && !s.store.ok && s.store.error) return `Capture store unavailable: ${s.store.error}`;
  if (s.checks.reload_error) return `Model update failed, previous models still in use: ${s.checks.reload_error}`;
  if (s.hold && s.hold.waiting) {
    return s.hold.for_operator ? "Retake: coach the applicant, then press Go (G)"
                               : `Retake: next photo armed in ${Math.ceil(s.hold.left_s || 0)} s (or press Go)`;
  }
  return "";
}

function render(s) {
  current = s;
  document.body.dataset.state = s.state;
  text("state", s.state.replace("_", " "));
  text("prompt", promptText(s));
  const cameraOk = s.camera.ok && s.state !== "camera_unavailable";
  text("camera", cameraOk ? "camera ok" : "camera lost");
  text("fps", cameraOk && s.fps ? `${s.fps.toFixed(1)} checks/s` : "—");
  showChecks(cameraOk ? s.verdict : null);
  showCountdown(s);
  const review = s.review && s.authorized;
  showForensics(s.forensics, review);
  text("last-capture", s.last_capture_id || "none yet");
  text("operator-line", `${s.kiosk_id}${s.operator ? " · operator " + s.operator : ""}`);
  // During review the operator judges the full-resolution photo, not the live stream.
  const still = $("still");
  if (review && still.dataset.session !== String(s.session)) {
    still.dataset.session = String(s.session);
    still.src = `/api/review.jpg?session=${s.session}`;
  }
  still.hidden = !review;
  setPreview(s.authorized);
  $("preview").hidden = review || !cameraOk || !s.authorized;
  $("blank").hidden = review || cameraOk || !s.authorized;
  $("accept").disabled = $("retake").disabled = !review;
  $("resume").hidden = !(s.hold && s.hold.waiting);
  $("resume").disabled = !s.authorized;
  if (s.state === "done" && !$("case-ref").matches(":focus")) $("case-ref").value = "";
  const notice = operatorNotice(s);
  $("notice").hidden = !notice;
  text("notice", notice);
}

async function poll() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    const s = await response.json();
    if (lostContact || (boot !== null && s.boot !== boot)) reopenPreview();
    lostContact = false;
    boot = s.boot;
    render(s);
  } catch (error) {
    lostContact = true;
    text("prompt", translate("state.error", "Console lost contact with the kiosk service"));
    text("notice", "Console lost contact with the kiosk service; reconnecting…");
    $("notice").hidden = false;
  }
  setTimeout(poll, POLL_MS);
}

async function send(action, body) {
  const response = await fetch(`/api/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const result = await response.json();
  if (!response.ok || result.error) {
    $("notice").hidden = false;
    text("notice", result.error || `${action} refused (${response.status})`);
  }
  return response.ok;
}

async function decide(action) {
  if (!current || !current.review) return;
  $("accept").disabled = $("retake").disabled = true;
  const body = { session: current.session };
  if (action === "accept") body.case_ref = $("case-ref").value.trim();
  if (action === "retake" && $("retake-reason").value) body.reason = $("retake-reason").value;
  if (await send(action, body) && action === "retake") $("retake-reason").value = "";
}

function resume() {
  if (current && current.hold && current.hold.waiting) send("resume", {});
}

// ---- controls -------------------------------------------------------------------------------------
function setMirror(on) {
  document.body.classList.toggle("mirror", on);
  $("mirror").checked = on;
}

function setDetails(on) {
  $("details").hidden = !on;
  $("details-toggle").checked = on;
  store.setItem("kiosk.details", on ? "1" : "0");
}

$("accept").addEventListener("click", () => decide("accept"));
$("retake").addEventListener("click", () => decide("retake"));
$("resume").addEventListener("click", resume);
$("language").addEventListener("change", (event) => {
  store.setItem("kiosk.language", event.target.value);
  if (current) render(current);
});
$("mirror").addEventListener("change", (event) => {
  store.setItem("kiosk.mirror", event.target.checked ? "1" : "0");
  setMirror(event.target.checked);
});
$("details-toggle").addEventListener("change", (event) => setDetails(event.target.checked));
document.addEventListener("keydown", (event) => {
  if (event.repeat || event.ctrlKey || event.altKey || event.metaKey) return;
  if (event.target.matches("input, select, textarea")) return; // typing a case reference
  const key = event.key.toLowerCase();
  if (key === "a") decide("accept");
  if (key === "r") decide("retake");
  if (key === "g") resume();
});

async function start() {
  await loadMessages();
  setDetails(store.getItem("kiosk.details") === "1");
  const first = await fetch("/api/state", { cache: "no-store" }).then((r) => r.json()).catch(() => null);
  const mirror = store.getItem("kiosk.mirror");
  setMirror(mirror === null ? Boolean(first && first.console.mirror_preview) : mirror === "1");
  poll();
}
// Started after "load": an endless MJPEG response would otherwise keep the page loading forever.
window.addEventListener("load", start);
