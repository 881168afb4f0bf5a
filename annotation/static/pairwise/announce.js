/* Words for screen readers: a live region (the status line, or the announcer only they hear) is given
 * its message. */

// Cleared first so that the same words said twice are announced twice.
export function speak(region, message) {
  region.textContent = "";
  setTimeout(function () { region.textContent = message; }, 30);
}
