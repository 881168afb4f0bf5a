/* The keyboard shortcuts (the page's help dialog lists them): 1, 2, 3 choose, Shift with a digit the
 * strength, Enter sends, S skips, U undoes the last answer (undo.js), R goes to the reason, I opens the
 * instructions, ? the help, and Escape leaves a text field. */

function digitOf(code) {
  var match = /^(?:Digit|Numpad)([0-9])$/.exec(code || "");
  if (!match) return null;
  return match[1] === "0" ? 10 : Number(match[1]);
}

// page: the rate page's parts (see rate.js); answers: submitJudgment (answer.js).
export function listenKeys(page, answers) {
  var config = page.config;
  var help = page.help;
  var skipBox = page.skipBox;
  var skipForm = page.skipForm;
  var rationaleBox = page.rationaleBox;

  function openSkip() {
    skipBox.open = true;
    skipForm.elements.reason.focus();
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing || help.open) return;
    var target = event.target;
    var typing = target.matches && target.matches("textarea, select, input:not([type=radio]):not([type=checkbox])");
    if (typing) {
      if (event.key === "Escape") {
        event.preventDefault();
        if (skipForm && target === skipForm.elements.reason) skipBox.open = false;
        target.blur();
        document.getElementById("title-prompt").focus();
      } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && target === rationaleBox) {
        event.preventDefault();
        answers.submitJudgment();
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var digit = digitOf(event.code);
    if (digit !== null) {
      event.preventDefault();
      if (event.shiftKey) {
        if (digit <= config.strengthLevels && !page.answerForm.pick("strength", digit)) {
          page.say("A tie has no strength.");
        }
      } else if (digit === 1) {
        page.answerForm.pick("choice", "left");
      } else if (digit === 2) {
        page.answerForm.pick("choice", "right");
      } else if (digit === 3 && config.allowTie) {
        page.answerForm.pick("choice", "tie");
      } else if (digit === 3) {
        page.say("This project has no tie: choose 1 or 2.");
      }
      if (!event.shiftKey && digit <= 3) page.answerForm.showErrors([]);
      return;
    }
    var key = event.key;
    if (key === "Enter") {
      // On a button, a link or a summary, Enter keeps its own meaning.
      if (target.closest && target.closest("button, a, summary")) return;
      event.preventDefault();
      answers.submitJudgment();
    } else if ((key === "s" || key === "S") && skipForm) {
      event.preventDefault();
      openSkip();
    } else if ((key === "u" || key === "U") && page.undo) {
      event.preventDefault();
      if (!page.undo.undo()) page.say("Nothing to undo: no answer of yours is open to correction now.");
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
}
