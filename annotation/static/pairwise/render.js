/* A served pair onto the page without a page load: its texts (the server's rendering of them, see
 * text.js) and the progress counts, the forms cleared for it, its lease and the clock started, and
 * focus on its prompt. */

import { loadPair, showPairTexts } from "./text.js";

// r: the API's reply with the pair (see api.js); page: the forms, the lease and the clock. Returns a
// promise, settled once the pair is on the page (rejected when its texts could not be loaded).
export function showPair(r, page) {
  var served = r.data;
  var served_at = Date.parse(r.headers.get("Date") || "") || Date.now();
  var received = performance.now();
  return loadPair(page.config.slug, served.assignment).then(function (pair) {
    showPairTexts(pair);
    page.form.elements.assignment.value = served.assignment;
    page.skipForm.elements.assignment.value = served.assignment;
    document.getElementById("done").textContent = served.progress.done;
    document.getElementById("left").textContent = served.progress.available;
    page.answerForm.clear();
    page.skipForm.reset();
    page.skipBox.open = false;
    page.answerForm.showErrors([]);
    // Less the time the texts took to come: the lease has been running since the answer came.
    page.leaseStart(Date.parse(served.expires_at) - served_at - (performance.now() - received));
    page.clock.start();
    window.scrollTo(0, 0);
    // Focus lands on the new prompt, where the reading starts; the shortcuts work from there.
    document.getElementById("title-prompt").focus();
  });
}
