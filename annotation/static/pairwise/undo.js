/* Undo: the rater's last judgment served again, its answer selected, to correct while the project's
 * correction window is open. The pair comes back on the server's page for that judgment
 * (my-judgments/<id>/), which works without this file too; this module keeps the Undo link pointing at
 * the judgment just sent from the page and hides it once its time has passed. On that page, the
 * correction is a plain form post (Post/Redirect/Get back to the rating page). */

// box: #undo (absent while correcting); seconds: the project's correction window (0: off).
export function undoControl(box, seconds) {
  if (!box) return null;
  var link = document.getElementById("undo-link");
  var timer = null;

  function showFor(ms) {
    clearTimeout(timer);
    box.hidden = ms <= 0;
    if (ms > 0) timer = setTimeout(function () { box.hidden = true; }, ms);
  }

  // What the server rendered: a judgment still open to correction (data-left-ms), or none.
  if (!box.hidden) showFor(Number(box.dataset.leftMs || 0));

  return {
    // data: the judgment API's answer (201). Its window began as the server saved it, a moment ago:
    // counted from now it ends a little late here at worst, and the server refuses past it.
    judged: function (data) {
      if (!data.correctable_until || !seconds) return;
      link.href = box.dataset.baseUrl + data.judgment + "/";
      showFor(seconds * 1000);
    },
    undo: function () {
      if (box.hidden || !link.getAttribute("href")) return false;
      location.assign(link.href);
      return true;
    },
  };
}

// The correction page's answers: checked as a judgment is, then posted by the form itself.
export function correctionAnswers(page) {
  function submitJudgment() {
    var problem = page.answerForm.missing();
    if (problem) {
      // In the error banner (role=alert), as answer.js does, never in the status toast.
      page.answerForm.showErrors([problem[0]]);
      if (problem[1]) problem[1].focus();
      return;
    }
    page.submitButton.disabled = true;
    // Not page.form.submit: the Submit button's id ("submit") shadows the form's method of that name.
    HTMLFormElement.prototype.submit.call(page.form);
  }
  return { submitJudgment: submitJudgment, skip: function () {} };
}
