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
