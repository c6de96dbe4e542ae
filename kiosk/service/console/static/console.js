// Operator console: polls /api/state, shows the prompt and details, sends Accept / Retake.
"use strict";

const POLL_MS = 250;
const $ = (id) => document.getElementById(id);
let current = null;

function text(id, value) {
  const el = $(id);
  if (el.textContent !== value) el.textContent = value;
}

function showChecks(verdict) {
  const body = $("checks").tBodies[0];
  body.replaceChildren();
  const rows = [];
  if (verdict) {
    rows.push(["decision", verdict.decision + (verdict.reasons.length ? ": " + verdict.reasons.join(", ") : ""),
               verdict.decision === "accept"]);
    rows.push(["faces", String(verdict.faces), verdict.faces === 1]);
    for (const [name, r] of Object.entries(verdict.checks || {})) {
      rows.push([name, `${r.score.toFixed(3)} ${r.failed ? "≥" : "<"} ${r.threshold.toFixed(3)}`, !r.failed]);
    }
  }
  for (const [name, value, ok] of rows) {
    const tr = body.insertRow();
    tr.insertCell().textContent = name;
    const cell = tr.insertCell();
    cell.textContent = value;
    cell.className = ok ? "pass" : "fail";
  }
}

function showForensics(report) {
  if (!report) return "—";
  if (report.status === "not installed") return "forensics: not installed";
  const lines = [];
  for (const [key, value] of Object.entries(report)) {
    if (value && typeof value === "object" && "score" in value) {
      lines.push(`${key}: ${value.flagged ? "FLAGGED" : "ok"} (${value.score.toFixed(3)} / ${value.threshold.toFixed(3)})`);
    } else if (value && typeof value === "object" && "error" in value) {
      lines.push(`${key}: error — ${value.error}`);
    } else {
      lines.push(`${key}: ${JSON.stringify(value)}`);
    }
  }
  return lines.join("\n") || "no forensic check ran";
}

function render(s) {
  current = s;
  document.body.dataset.state = s.state;
  text("state", s.state.replace("_", " "));
  text("prompt", s.prompt);
  text("camera", s.camera.ok ? "camera ok" : `camera unavailable: ${s.camera.message}`);
  text("fps", `${s.fps.toFixed(1)} checks/s`);
  showChecks(s.verdict);
  text("forensics", showForensics(s.forensics));
  text("last-capture", s.last_capture_id || "none yet");
  // During review the operator judges the full-resolution photo, not the live stream.
  const still = $("still");
  const showStill = s.review && s.authorized;
  if (showStill && still.dataset.session !== String(s.session)) {
    still.dataset.session = String(s.session);
    still.src = `/api/review.jpg?session=${s.session}`;
  }
  still.hidden = !showStill;
  $("preview").hidden = showStill;
  const canDecide = s.review && s.authorized;
  $("accept").disabled = !canDecide;
  $("retake").disabled = !canDecide;
  const notice = $("notice");
  if (s.token_required && !s.authorized) {
    notice.hidden = false;
    notice.textContent = "Operator not signed in: open /login?token=… on this screen.";
  } else if (s.checks.reload_error) {
    notice.hidden = false;
    notice.textContent = `Model update failed, previous models still in use: ${s.checks.reload_error}`;
  } else {
    notice.hidden = true;
  }
}

async function poll() {
  try {
    const response = await fetch("/api/state", { cache: "no-store" });
    render(await response.json());
  } catch (error) {
    text("prompt", "Console lost contact with the kiosk service");
  }
  setTimeout(poll, POLL_MS);
}

async function decide(action) {
  if (!current || !current.review) return;
  $("accept").disabled = $("retake").disabled = true;
  const response = await fetch(`/api/${action}`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ session: current.session }),
  });
  const result = await response.json();
  const notice = $("notice");
  notice.hidden = response.ok && !result.error;
  notice.textContent = result.error || "";
}

$("accept").addEventListener("click", () => decide("accept"));
$("retake").addEventListener("click", () => decide("retake"));
document.addEventListener("keydown", (event) => {
  if (event.repeat || event.ctrlKey || event.altKey || event.metaKey) return;
  if (event.key === "a" || event.key === "A") decide("accept");
  if (event.key === "r" || event.key === "R") decide("retake");
});
// The MJPEG stream ends when the service restarts; reconnect.
$("preview").addEventListener("error", () => {
  setTimeout(() => { $("preview").src = "/preview.mjpg?" + Date.now(); }, 1000);
});
// Started after "load": an endless MJPEG response would otherwise keep the page loading forever.
window.addEventListener("load", () => { $("preview").src = "/preview.mjpg"; });
poll();
