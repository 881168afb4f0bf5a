/* Time on task as the rater saw it: only while the tab is visible. The server's own figure (served
 * to received) stays the authoritative one; this is kept beside it. */

// A clock that runs from now while the tab is visible: start() sets it back to zero, read() in ms.
export function visibleClock() {
  var clock = { total: 0, since: null };
  function start() {
    clock.total = 0;
    clock.since = document.visibilityState === "visible" ? performance.now() : null;
  }
  function read() {
    var extra = clock.since === null ? 0 : performance.now() - clock.since;
    return Math.max(0, Math.round(clock.total + extra));
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      if (clock.since === null) clock.since = performance.now();
    } else if (clock.since !== null) {
      clock.total += performance.now() - clock.since;
      clock.since = null;
    }
  });
  start();
  return { start: start, read: read };
}

// "0 min", "42 min", "1 h 05 min": as the server says it (annotation/pages/views.py, duration_text).
function durationText(ms) {
  var minutes = Math.floor(ms / 60000);
  if (minutes < 60) return minutes + " min";
  return Math.floor(minutes / 60) + " h " + String(minutes % 60).padStart(2, "0") + " min";
}

var SESSION_KEY = "pairwise-session-ms";

// The header's time spent (#time): today's is the server's figure for the judgments made before this
// page was loaded, plus the time this page has been visible since; the session's is the time the rating
// page was visible in this tab (sessionStorage: across pairs and reloads, until the tab is closed).
export function timeSpent(box) {
  var todayMs = Number(box.dataset.todayMs) || 0;
  var sessionMs = 0;
  try { sessionMs = Number(sessionStorage.getItem(SESSION_KEY)) || 0; } catch (e) { sessionMs = 0; }
  var clock = visibleClock();
  function show() {
    var here = clock.read();
    document.getElementById("time-today").textContent = durationText(todayMs + here);
    document.getElementById("time-session").textContent = durationText(sessionMs + here);
  }
  function keep() {
    try { sessionStorage.setItem(SESSION_KEY, String(sessionMs + clock.read())); } catch (e) { /* shown, not kept */ }
  }
  show();
  setInterval(function () { show(); keep(); }, 15000);
  addEventListener("pagehide", keep);
  document.addEventListener("visibilitychange", keep);
}
