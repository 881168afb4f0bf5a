/* Sending an answer (a judgment or a skip) and what follows it: the next pair that came with it, a
 * note when the pair was no longer open to it, or what to do when the server or the connection failed. */

import { served } from "./api.js";
import { showPair } from "./render.js";

// page: the rate page's parts (see rate.js); api: its endpoints (api.js); assignmentId: the pair shown.
export function answers(page, api, assignmentId) {
  var busy = false;
  // The assignment whose last answer got no reply (the connection failed): the server may have saved
  // it, and a second try then answers already_judged.
  var unsure = null;

  function setBusy(on) {
    busy = on;
    page.root.setAttribute("aria-busy", on ? "true" : "false");
    page.submitButton.disabled = on;
    // A new request: the last one's "Saved. Next pair." no longer describes what is going on.
    if (on) page.statusLine.textContent = "";
  }

  function submitJudgment() {
    if (busy) return;
    var problem = page.answerForm.missing();
    if (problem) {
      // In the error banner (role=alert), never in the status toast, which tells of what went well.
      page.answerForm.showErrors([problem[0]]);
      if (problem[1]) problem[1].focus();
      return;
    }
    var body = page.answerForm.answer(page.clock.read());
    // "next": the answer brings the next pair with it, in one round trip.
    body.next = true;
    setBusy(true);
    api.judgment(assignmentId, body)
      .then(function (r) {
        if (r.status === 201) {
          if (page.undo) page.undo.judged(r.data);
          return proceed(served(r), "Saved.", "good");
        }
        if (r.status === 409) return next(conflictNote(r.data.code, r.data.detail, "Saved."));
        if (r.status === 400) {
          var errors = (r.data.errors || []).map(function (e) { return e.message; });
          page.answerForm.showErrors(errors.length ? errors : [r.data.detail || "The answer was refused."]);
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
    api.skip(assignmentId, { reason: page.skipForm.elements.reason.value, next: true })
      .then(function (r) {
        if (r.status === 200) return proceed(served(r), "Skipped. That pair will not come back to you.", "good");
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
      page.answerForm.showErrors(["The server answered " + r.status + ": your answer may not have been saved. " +
        "Press Enter to send it again (it is never saved twice)."]);
    } else {
      page.answerForm.showErrors(["The server answered " + r.status + ": nothing was saved. Press Enter to try again."]);
    }
    setBusy(false);
  }

  function offline() {
    // No reply: the request may have been lost on the way, or the reply after the server saved it.
    unsure = assignmentId;
    page.answerForm.showErrors(["No answer from the server: your answer may not have been saved. " +
      "Press Enter to send it again (it is never saved twice)."]);
    setBusy(false);
  }

  function next(message) {
    return api.next(page.config.slug).catch(function () {
      cannotGoOn(message);
      return new Promise(function () {});
    }).then(function (r) { proceed(r, message, /^Saved/.test(message) ? "good" : "warn"); });
  }

  // The answer went through; only the next pair did not come. Enter must not send it again (busy stays).
  function cannotGoOn(message) {
    page.answerForm.showErrors([message + " The next pair could not be loaded: reload the page to go on."]);
  }

  // kind: how the toast looks, "good" (saved) or "warn" (not saved, or not as asked).
  function proceed(r, message, kind) {
    unsure = null;
    if (r.status === 200 && sameSettings(r.data.project)) {
      return showPair(r, page).then(function () {
        assignmentId = r.data.assignment;
        page.say(message + " Next pair.", kind);
        setBusy(false);
      }, function () { cannotGoOn(message); });
    }
    // Nothing left (done, or wait for others: the server's page says which), or the project's
    // settings changed since this page was made: a full load shows the right page.
    sessionStorage.setItem("pairwise-note", message);
    location.reload();
  }

  function sameSettings(project) {
    var config = page.config;
    return project && project.allow_tie === config.allowTie &&
      project.strength_levels === config.strengthLevels && project.rationale === config.rationale;
  }

  return { submitJudgment: submitJudgment, skip: skip };
}
