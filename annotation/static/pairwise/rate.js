/* Pairwise rating page: keyboard shortcuts, the next pair without a page load, the time the tab was
 * visible, and the lease countdown. Without this file the page still works as plain form posts.
 *
 * Safety rule: model text only ever enters the page through textContent. Nothing here builds HTML
 * from strings, so no prompt or response can become markup, whatever it holds.
 */
"use strict";

document.documentElement.classList.replace("no-js", "js");

(function () {
  var note = sessionStorage.getItem("pairwise-note");
  sessionStorage.removeItem("pairwise-note");

  var root = document.getElementById("rate");
  if (!root) {
    // The page for "nothing left": what happened to the last answer, then wait or stop.
    var pageNote = document.getElementById("page-note");
    if (note && pageNote) pageNote.textContent = note;
    var waiting = document.getElementById("wait");
    if (waiting) comeBackLater(waiting);
    return;
  }

  var form = document.getElementById("judge-form");
  var skipBox = document.getElementById("skip");
  var skipForm = document.getElementById("skip-form");
  var statusLine = document.getElementById("status");
  var announcer = document.getElementById("announcer");
  var errorsBox = document.getElementById("form-errors");
  var help = document.getElementById("help");
  var rationaleBox = document.getElementById("rationale");
  var submitButton = document.getElementById("submit");
  var config = {
    slug: root.dataset.slug,
    allowTie: root.dataset.allowTie === "1",
    strengthLevels: Number(root.dataset.strengthLevels),
    rationale: root.dataset.rationale,
    leaseSeconds: Number(root.dataset.leaseSeconds),
  };
  var csrfToken = form.querySelector("[name=csrfmiddlewaretoken]").value;
  var assignmentId = Number(form.elements.assignment.value);
  var busy = false;
  // The assignment whose last answer got no reply (the connection failed): the server may have saved
  // it, and a second try then answers already_judged.
  var unsure = null;

  if (note) say(note);

  // Time on task as the rater saw it: only while the tab is visible. The server's own figure (served
  // to received) stays the authoritative one; this is kept beside it.
  var clock = { total: 0, since: null };
  function clockStart() {
    clock.total = 0;
    clock.since = document.visibilityState === "visible" ? performance.now() : null;
  }
  function clockRead() {
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
  clockStart();

  // The lease: a warning shortly before it runs out, and what happens to an answer after it did.
  // Measured from the server's own figures (time left at render, or expires_at against the response's
  // Date header), so a wrong clock on the rater's machine does not matter.
  var lease = { deadline: 0, state: "" };
  var leaseBox = document.getElementById("lease");
  var leaseMessage = document.getElementById("lease-message");
  function leaseStart(msLeft) {
    lease.deadline = performance.now() + msLeft;
    lease.state = "";
    leaseBox.hidden = true;
    leaseMessage.textContent = "";
  }
  function leaseTick() {
    var left = lease.deadline - performance.now();
    var warnAt = Math.min(120, config.leaseSeconds / 4) * 1000;
    // The banner counts down every second; screen readers hear only the two changes, through say().
    if (left <= 0 && lease.state !== "expired") {
      lease.state = "expired";
      leaseBox.hidden = false;
      leaseBox.className = "lease expired";
      leaseMessage.textContent =
        "The hold on this pair ran out. Answer anyway: your answer is saved if no other rater has " +
        "taken the pair; if one has, it is not saved and you get a new pair.";
      announce(leaseMessage.textContent);
    } else if (left > 0 && left <= warnAt) {
      var seconds = Math.ceil(left / 1000);
      leaseMessage.textContent =
        "The hold on this pair runs out in " + Math.floor(seconds / 60) + ":" +
        String(seconds % 60).padStart(2, "0") + ". After that another rater may take it.";
      if (lease.state !== "warning") {
        lease.state = "warning";
        leaseBox.hidden = false;
        leaseBox.className = "lease warning";
        announce(leaseMessage.textContent);
      }
    }
  }
  leaseStart(Number(root.dataset.leaseLeftMs));
  setInterval(leaseTick, 1000);

  // Text: the same rule as annotation/pages/text.py (segments): fenced code blocks apart from prose.
  var FENCE = /^ {0,3}(`{3,}|~{3,})/;
  function segments(text) {
    var pieces = [];
    var lines = [];
    var fence = "";
    function flush(kind) {
      var chunk = lines.join("\n").replace(/^\n+|\n+$/g, "");
      if (chunk) pieces.push({ kind: kind, text: chunk });
      lines = [];
    }
    text.replace(/\r\n/g, "\n").split("\n").forEach(function (line) {
      var match = FENCE.exec(line);
      if (!fence && match) {
        flush("prose");
        fence = match[1];
        lines.push(line);
      } else if (fence && match && match[1][0] === fence[0] && match[1].length >= fence.length &&
                 line.trim() === match[1]) {
        lines.push(line);
        flush("code");
        fence = "";
      } else {
        lines.push(line);
      }
    });
    flush(fence ? "code" : "prose");
    return pieces;
  }
  function showText(id, text) {
    var box = document.getElementById("text-" + id);
    box.replaceChildren();
    if (text.trim() === "") {
      var marker = document.createElement("p");
      marker.className = "marker";
      marker.textContent = text === "" ? "(empty response)" : "(only whitespace)";
      box.append(marker);
    } else {
      segments(text).forEach(function (piece) {
        var node = document.createElement(piece.kind === "code" ? "pre" : "div");
        node.className = piece.kind === "code" ? "code" : "prose";
        node.textContent = piece.text;
        box.append(node);
      });
    }
    box.scrollTop = 0;
  }

  function say(message) {
    // Cleared first so that the same words said twice are announced twice.
    statusLine.textContent = "";
    setTimeout(function () { statusLine.textContent = message; }, 30);
  }
  function announce(message) {
    // For screen readers only: the lease banner shows the same words on screen, counting down.
    announcer.textContent = "";
    setTimeout(function () { announcer.textContent = message; }, 30);
  }
  function showErrors(messages) {
    errorsBox.replaceChildren();
    messages.forEach(function (message) {
      var p = document.createElement("p");
      p.textContent = message;
      errorsBox.append(p);
    });
    errorsBox.hidden = messages.length === 0;
  }

  function radios(name) {
    return Array.prototype.slice.call(form.querySelectorAll("input[name=" + name + "]"));
  }
  function checkedValue(name) {
    var on = radios(name).filter(function (r) { return r.checked; })[0];
    return on ? on.value : null;
  }
  function pick(name, value) {
    var radio = radios(name).filter(function (r) { return r.value === String(value); })[0];
    if (!radio || radio.disabled) return false;
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
    return true;
  }
  // A tie has no strength: the scale is switched off while tie is chosen.
  function syncStrength() {
    var tie = checkedValue("choice") === "tie";
    radios("strength").forEach(function (r) {
      r.disabled = tie;
      if (tie) r.checked = false;
    });
  }
  form.addEventListener("change", syncStrength);
  syncStrength();

  function api(url, body) {
    var options = {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return { status: response.status, data: data || {}, headers: response.headers };
      });
    });
  }

  function setBusy(on) {
    busy = on;
    root.setAttribute("aria-busy", on ? "true" : "false");
    submitButton.disabled = on;
    // A new request: the last one's "Saved. Next pair." no longer describes what is going on.
    if (on) statusLine.textContent = "";
  }

  function missing() {
    var choice = checkedValue("choice");
    if (!choice) {
      return ["Choose a response first: 1 or 2" + (config.allowTie ? ", or 3 for a tie." : "."), radios("choice")[0]];
    }
    if (config.strengthLevels > 0 && choice !== "tie" && !checkedValue("strength")) {
      var last = config.strengthLevels === 10 ? 0 : config.strengthLevels;
      return ["Say how much better: Shift+1 to Shift+" + last + ".", radios("strength")[0]];
    }
    if (config.rationale === "required" && !rationaleBox.value.trim()) {
      return ["This project needs a reason: write why before you submit (R goes to the box).", rationaleBox];
    }
    return null;
  }

  function submitJudgment() {
    if (busy) return;
    var problem = missing();
    if (problem) {
      showErrors([problem[0]]);
      say(problem[0]);
      if (problem[1]) problem[1].focus();
      return;
    }
    var choice = checkedValue("choice");
    // "next": the answer brings the next pair with it, in one round trip.
    var body = { choice: choice, client_time_ms: clockRead(), next: true };
    if (config.strengthLevels > 0 && choice !== "tie") body.strength = Number(checkedValue("strength"));
    if (config.rationale !== "off") body.rationale = rationaleBox.value;
    setBusy(true);
    api("/api/v1/assignments/" + assignmentId + "/judgment/", body)
      .then(function (r) {
        if (r.status === 201) return proceed(served(r), "Saved.");
        if (r.status === 409) return next(conflictNote(r.data.code, r.data.detail, "Saved."));
        if (r.status === 400) {
          var errors = (r.data.errors || []).map(function (e) { return e.message; });
          showErrors(errors.length ? errors : [r.data.detail || "The answer was refused."]);
          setBusy(false);
          return;
        }
        failed(r);
      })
      .catch(offline);
  }

  // savedWord: what the rater is told when a judgment whose reply was lost turns out to have been saved.
  function conflictNote(code, detail, savedWord) {
    var retried = unsure === assignmentId;
    unsure = null;
    if (code === "already_judged" && retried && savedWord) {
      return savedWord + " (Your earlier try had reached the server.)";
    }
    if (code === "already_judged") {
      return "That pair already had your answer (from another tab or an earlier try); this one was not saved.";
    }
    if (code === "assignment_expired") {
      return "Your answer was not saved: the hold on that pair ran out and another rater took it. Here is a new pair.";
    }
    if (code === "assignment_skipped") return "That pair was skipped, so the answer was not saved.";
    return detail || "The answer was not saved.";
  }

  function skip() {
    if (busy) return;
    setBusy(true);
    api("/api/v1/assignments/" + assignmentId + "/skip/", { reason: skipForm.elements.reason.value, next: true })
      .then(function (r) {
        if (r.status === 200) return proceed(served(r), "Skipped. That pair will not come back to you.");
        if (r.status === 409) return next(conflictNote(r.data.code, r.data.detail, null));
        failed(r);
      })
      .catch(offline);
  }

  function failed(r) {
    if (r.status === 401 || r.status === 403 || r.status === 404) {
      // Logged out, removed from the project, or the pair is gone: the server's page says which.
      location.reload();
      return;
    }
    if (r.status >= 500) {
      // A proxy's 502 or 504 may come after the server saved the answer.
      unsure = assignmentId;
      showErrors(["The server answered " + r.status + ": your answer may not have been saved. " +
        "Press Enter to send it again (it is never saved twice)."]);
    } else {
      showErrors(["The server answered " + r.status + ": nothing was saved. Press Enter to try again."]);
    }
    setBusy(false);
  }

  function offline() {
    // No reply: the request may have been lost on the way, or the reply after the server saved it.
    unsure = assignmentId;
    showErrors(["No answer from the server: your answer may not have been saved. " +
      "Press Enter to send it again (it is never saved twice)."]);
    setBusy(false);
  }

  function next(message) {
    return api("/api/v1/projects/" + encodeURIComponent(config.slug) + "/next/").catch(function () {
      // The answer above went through; only the next pair did not come. Enter must not send it again.
      showErrors([message + " The next pair could not be loaded: reload the page to go on."]);
      return new Promise(function () {});
    }).then(function (r) { proceed(r, message); });
  }

  // The next pair that came with an answer, as `next` would have answered: 200 with it, or 204 (null).
  function served(r) {
    var pair = r.data.next;
    return { status: pair ? 200 : 204, data: pair || {}, headers: r.headers };
  }

  function proceed(r, message) {
    unsure = null;
    if (r.status === 200 && sameSettings(r.data.project)) {
      show(r);
      say(message + " Next pair.");
      setBusy(false);
      return;
    }
    // Nothing left (done, or wait for others: the server's page says which), or the project's
    // settings changed since this page was made: a full load shows the right page.
    sessionStorage.setItem("pairwise-note", message);
    location.reload();
  }

  function sameSettings(project) {
    return project && project.allow_tie === config.allowTie &&
      project.strength_levels === config.strengthLevels && project.rationale === config.rationale;
  }

  function show(r) {
    var served = r.data;
    assignmentId = served.assignment;
    form.elements.assignment.value = served.assignment;
    skipForm.elements.assignment.value = served.assignment;
    showText("prompt", served.prompt);
    showText("left", served.left);
    showText("right", served.right);
    document.getElementById("done").textContent = served.progress.done;
    document.getElementById("left").textContent = served.progress.available;
    // Nothing carries over from one pair to the next: no choice is ever made for the rater.
    form.reset();
    radios("choice").forEach(function (r) { r.checked = false; });
    radios("strength").forEach(function (r) { r.checked = false; });
    if (rationaleBox) rationaleBox.value = "";
    syncStrength();
    skipForm.reset();
    skipBox.open = false;
    showErrors([]);
    var served_at = Date.parse(r.headers.get("Date") || "") || Date.now();
    leaseStart(Date.parse(served.expires_at) - served_at);
    clockStart();
    window.scrollTo(0, 0);
    // Focus lands on the new prompt, where the reading starts; the shortcuts work from there.
    document.getElementById("title-prompt").focus();
  }

  function openSkip() {
    skipBox.open = true;
    skipForm.elements.reason.focus();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submitJudgment();
  });
  skipForm.addEventListener("submit", function (event) {
    event.preventDefault();
    skip();
  });
  document.getElementById("help-button").addEventListener("click", function () { help.showModal(); });

  function digitOf(code) {
    var match = /^(?:Digit|Numpad)([0-9])$/.exec(code || "");
    if (!match) return null;
    return match[1] === "0" ? 10 : Number(match[1]);
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing || help.open) return;
    var target = event.target;
    var typing = target.matches && target.matches("textarea, select, input:not([type=radio]):not([type=checkbox])");
    if (typing) {
      if (event.key === "Escape") {
        event.preventDefault();
        if (target === skipForm.elements.reason) skipBox.open = false;
        target.blur();
        document.getElementById("title-prompt").focus();
      } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target === rationaleBox) {
        event.preventDefault();
        submitJudgment();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var digit = digitOf(event.code);
    if (digit !== null) {
      event.preventDefault();
      if (event.shiftKey) {
        if (digit <= config.strengthLevels && !pick("strength", digit)) {
          say("A tie has no strength.");
        }
      } else if (digit === 1) {
        pick("choice", "left");
      } else if (digit === 2) {
        pick("choice", "right");
      } else if (digit === 3 && config.allowTie) {
        pick("choice", "tie");
      } else if (digit === 3) {
        say("This project has no tie: choose 1 or 2.");
      }
      if (!event.shiftKey && digit <= 3) showErrors([]);
      return;
    }
    var key = event.key;
    if (key === "Enter") {
      // On a button, a link or a summary, Enter keeps its own meaning.
      if (target.closest && target.closest("button, a, summary")) return;
      event.preventDefault();
      submitJudgment();
    } else if (key === "s" || key === "S") {
      event.preventDefault();
      openSkip();
    } else if ((key === "r" || key === "R") && rationaleBox) {
      event.preventDefault();
      rationaleBox.focus();
    } else if (key === "i" || key === "I") {
      var instructions = document.querySelector(".instructions");
      if (instructions) {
        event.preventDefault();
        instructions.open = !instructions.open;
      }
    } else if (key === "?") {
      event.preventDefault();
      help.showModal();
    }
  });

  // Where the reading starts; the shortcuts work from there. Not the first field of a form: arrow
  // keys on a radio button would change the answer.
  document.getElementById("title-prompt").focus({ preventScroll: true });

  // After the help list closes, focus goes back where the rater was (the browser does it), or here.
  help.addEventListener("close", function () {
    if (document.activeElement === document.body) document.getElementById("title-prompt").focus();
  });
})();

// "Come back in a few minutes": ask again on our own once the first lease held by someone else may
// have run out (the server's Retry-After), only while the tab is visible. Retry-After: 1 is a pair with
// a place for the rater that another request was handing out just then: ask again in a second.
function comeBackLater(box) {
  var due = performance.now() + Math.min(Math.max(Number(box.dataset.retryAfter), 1), 900) * 1000;
  setInterval(function () {
    if (document.visibilityState === "visible" && performance.now() >= due) location.reload();
  }, 1000);
}
