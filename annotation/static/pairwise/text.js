/* A pair's texts onto the page, and how they are shown. The server renders a pair (annotation/pages/
 * text.py: markdown with raw HTML off, no loaded image, no script link; views.rate_pair): the page loads
 * that fragment for each next pair, so a pair looks the same whether it came with the page or after an
 * answer, and no markdown library runs in the page. The "Plain text" button shows the texts as written
 * instead; the browser remembers the choice. */

var PLAIN_KEY = "pairwise-plain";

// The rater's pair `assignmentId` as the server renders it: a promise of the #pair element to put in.
export function loadPair(slug, assignmentId) {
  var url = "/projects/" + encodeURIComponent(slug) + "/rate/pair/" + assignmentId + "/";
  return fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
    .then(function (response) {
      if (!response.ok) throw new Error("The pair could not be loaded (" + response.status + ").");
      return response.text();
    })
    .then(function (html) {
      // A parsed document runs nothing (and the CSP allows no inline script anyway); its #pair is
      // moved into this page whole.
      var pair = new DOMParser().parseFromString(html, "text/html").getElementById("pair");
      if (!pair) throw new Error("The pair could not be loaded.");
      return document.adoptNode(pair);
    });
}

// Swaps the pair on the page for `pair` (from loadPair).
export function showPairTexts(pair) {
  document.getElementById("pair").replaceWith(pair);
}

function stored() {
  try { return localStorage.getItem(PLAIN_KEY) === "1"; } catch (e) { return false; }
}

// The "Plain text" button: a class on <html> switches every text (CSS: pair.css) at once.
export function plainToggle(button) {
  function set(on) {
    document.documentElement.classList.toggle("plain-text", on);
    button.setAttribute("aria-pressed", on ? "true" : "false");
  }
  set(stored());
  button.addEventListener("click", function () {
    var on = !document.documentElement.classList.contains("plain-text");
    set(on);
    try { localStorage.setItem(PLAIN_KEY, on ? "1" : "0"); } catch (e) { /* not remembered, still shown */ }
  });
}
