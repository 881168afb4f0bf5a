/* The page for "nothing left" while others hold the pairs: it asks again by itself. */

// "Come back in a few minutes": ask again on our own once the first lease held by someone else may
// have run out (the server's Retry-After), only while the tab is visible. Retry-After: 1 is a pair with
// a place for the rater that another request was handing out just then: ask again in a second.
export function comeBackLater(box) {
  var due = performance.now() + Math.min(Math.max(Number(box.dataset.retryAfter), 1), 900) * 1000;
  setInterval(function () {
    if (document.visibilityState === "visible" && performance.now() >= due) location.reload();
  }, 1000);
}
