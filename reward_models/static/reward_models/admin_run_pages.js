// The training-run page's live fields: polls the run's progress JSON (an admin view) and puts each text of
// its "live" object into the page's elements of that name (data-live="name"), as the server words it; an
// element marked data-live-hide-empty is hidden while its text is empty (the late-heartbeat note). data-live-value="name" sets a value
// (the progress bar) from the top-level field of that name. A new live figure is an entry in the server's
// "live" dict and an element with its name: nothing here names a field. When the run changes status
// (queued -> running -> finished) the page is loaded again, so the server draws the curves and figures of
// the new state. No library; loaded as a file (the site's CSP allows no inline script); text goes in with
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
  var failures = 0;

  function show(state) {
    if (state.status !== shownStatus) {
      window.location.reload();
      return false;
    }
    var live = state.live || {};
    root.querySelectorAll("[data-live]").forEach(function (element) {
      var name = element.getAttribute("data-live");
      if (!Object.prototype.hasOwnProperty.call(live, name)) {
        return; // a field this server does not send: leave the page's text
      }
      var text = live[name] === null ? "" : String(live[name]);
      element.textContent = text;
      if (element.hasAttribute("data-live-hide-empty")) {
        element.hidden = text === "";
      }
    });
    root.querySelectorAll("[data-live-value]").forEach(function (element) {
      var value = Number(state[element.getAttribute("data-live-value")]);
      if (isFinite(value)) {
        element.value = value;
      }
    });
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
