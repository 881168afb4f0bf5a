/* Pairwise rating page: keyboard shortcuts, the next pair without a page load, the time the tab was
 * visible, and the lease countdown. Without these files the page still works as plain form posts.
 * This module wires the others of this folder to the page. They import each other by relative URL, so
 * the static files keep their names (config/settings.py: no manifest storage, no hashed names).
 *
 * Safety rule: model text enters the page only as the server rendered it (text.js: the pair's HTML
 * from annotation/pages/text.py, markdown with raw HTML off) or through textContent. Nothing here
 * builds HTML from strings, so no prompt or response can become markup, whatever it holds.
 */

import { speak } from "./announce.js";
import { answers } from "./answer.js";
import { endpoints } from "./api.js";
import { timeSpent, visibleClock } from "./clock.js";
import { answerForm } from "./form.js";
import { listenKeys } from "./keys.js";
import { leaseCountdown } from "./lease.js";
import { correctionAnswers, undoControl } from "./undo.js";
import { plainToggle } from "./text.js";
import { comeBackLater } from "./wait.js";

document.documentElement.classList.replace("no-js", "js");

var note = sessionStorage.getItem("pairwise-note");
sessionStorage.removeItem("pairwise-note");

var root = document.getElementById("rate");
if (root) {
  ratePage(root, note);
} else {
  // The page for "nothing left": what happened to the last answer, then wait or stop.
  var pageNote = document.getElementById("page-note");
  if (note && pageNote) {
    pageNote.textContent = note;
    pageNote.dataset.kind = /^(Saved|Skipped)/.test(note) ? "good" : "warn";
  }
  var waiting = document.getElementById("wait");
  if (waiting) comeBackLater(waiting);
}

function ratePage(root, note) {
  var form = document.getElementById("judge-form");
  var statusLine = document.getElementById("status");
  var announcer = document.getElementById("announcer");
  var rationaleBox = document.getElementById("rationale");
  var config = {
    slug: root.dataset.slug,
    allowTie: root.dataset.allowTie === "1",
    strengthLevels: Number(root.dataset.strengthLevels),
    rationale: root.dataset.rationale,
    leaseSeconds: Number(root.dataset.leaseSeconds),
    // Set on the page that corrects one of the rater's judgments (undo.js).
    correcting: Boolean(root.dataset.correcting),
  };
  // The page's parts, as the other modules use them.
  var page = {
    root: root,
    config: config,
    form: form,
    skipBox: document.getElementById("skip"),
    skipForm: document.getElementById("skip-form"),
    statusLine: statusLine,
    help: document.getElementById("help"),
    rationaleBox: rationaleBox,
    submitButton: document.getElementById("submit"),
    // The status toast: kind "good" (green: saved), "warn" (not saved, not as asked) or none (a note).
    say: function (message, kind) { toast(statusLine, message, kind); },
    announce: function (message) { speak(announcer, message); },
    answerForm: answerForm(form, config, rationaleBox, document.getElementById("form-errors")),
    clock: visibleClock(),
    undo: undoControl(document.getElementById("undo"), Number(root.dataset.correctionSeconds)),
    // For screen readers only: the lease banner shows the same words on screen, counting down.
    leaseStart: leaseCountdown(
      document.getElementById("lease"),
      document.getElementById("lease-message"),
      config.leaseSeconds,
      function (message) { speak(announcer, message); }
    ),
  };
  plainToggle(document.getElementById("plain-toggle"));
  timeSpent(document.getElementById("time"));
  // The error banner is about the answer as it was: changing the answer puts it away.
  form.addEventListener("change", function () { page.answerForm.showErrors([]); });
  var api = endpoints(form.querySelector("[name=csrfmiddlewaretoken]").value);
  var answering = config.correcting
    ? correctionAnswers(page)
    : answers(page, api, Number(form.elements.assignment.value));

  if (note) page.say(note, /^(Saved|Skipped)/.test(note) ? "good" : "warn");
  if (!config.correcting) page.leaseStart(Number(root.dataset.leaseLeftMs));

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    answering.submitJudgment();
  });
  if (page.skipForm) {
    page.skipForm.addEventListener("submit", function (event) {
      event.preventDefault();
      answering.skip();
    });
  }
  document.getElementById("help-button").addEventListener("click", function () { page.help.showModal(); });
  listenKeys(page, answering);

  // Where the reading starts; the shortcuts work from there. Not the first field of a form: arrow
  // keys on a radio button would change the answer.
  document.getElementById("title-prompt").focus({ preventScroll: true });

  // After the help list closes, focus goes back where the rater was (the browser does it), or here.
  page.help.addEventListener("close", function () {
    if (document.activeElement === document.body) document.getElementById("title-prompt").focus();
  });
}

// The toast says its message (to screen readers too: role=status) and goes after a while; a new message
// replaces it and its timer.
var toastTimer = null;
function toast(box, message, kind) {
  box.dataset.kind = kind || "note";
  speak(box, message);
  clearTimeout(toastTimer);
  toastTimer = setTimeout(function () { box.textContent = ""; }, 6000);
}
