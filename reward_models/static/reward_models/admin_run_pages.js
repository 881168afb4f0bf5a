// The training-run page's live progress: polls the run's progress JSON (an admin view), moves the bar,
// shows or clears the note that the run's heartbeat is late and keeps the rows "Sent to the workers" and
// "Last heartbeat" up to date (the texts as the server words them). When the run changes status (queued ->
// running -> finished) the page is loaded again, so the server draws the curves and figures of the new
// state. No library; loaded as a file (the site's CSP allows no inline script); text goes in with
// textContent only.
(function () {
  "use strict";

  var root = document.querySelector(".run-page[data-progress-url]");
  if (!root) {
    return;
  }
  var url = root.getAttribute("data-progress-url");
  var every = parseInt(root.getAttribute("data-poll-ms"), 10) || 2000;
  var shownStatus = root.getAttribute("data-status");
  var bar = document.getElementById("run-progress");
  var percent = document.getElementById("run-progress-text");
  var step = document.getElementById("run-step");
  var late = document.getElementById("run-late");
  var sent = document.getElementById("run-sent");
  var heartbeat = document.getElementById("run-heartbeat");
  var failures = 0;

  function stepText(state) {
    if (state.step === null) {
      return "";
    }
    var text = "step " + Math.round(state.step);
    if (state.total_steps) {
      text += " of " + Math.round(state.total_steps);
    }
    if (state.epoch !== null) {
      text += ", epoch " + Math.round(state.epoch);
    }
    if (state.loss !== null) {
      text += ", loss " + state.loss.toFixed(4);
    }
    return text;
  }

  function showLate(note) {
    var shown = document.getElementById("run-silent");
    if (!note) {
      if (shown) {
        shown.remove();
      }
      return;
    }
    if (!shown) {
      shown = document.createElement("p");
      shown.id = "run-silent";
      shown.className = "errornote";
      late.appendChild(shown);
    }
    shown.textContent = note;
  }

  function show(state) {
    if (state.status !== shownStatus) {
      window.location.reload();
      return false;
    }
    var progress = Math.min(1, Math.max(0, Number(state.progress) || 0));
    bar.value = progress;
    bar.textContent = String(progress);
    percent.textContent = Math.round(progress * 100) + "%";
    step.textContent = stepText(state);
    showLate(state.late_note);
    sent.textContent = state.sent_text;
    heartbeat.textContent = state.heartbeat_text;
    return !state.finished;
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (state) {
        failures = 0;
        if (show(state)) {
          window.setTimeout(poll, every);
        }
      })
      .catch(function () {
        // A restarting server or a lost connection: wait longer each time, give up after a while.
        failures += 1;
        if (failures < 20) {
          window.setTimeout(poll, every * Math.min(failures + 1, 10));
        }
      });
  }

  window.setTimeout(poll, every);
})();
