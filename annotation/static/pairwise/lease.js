/* The lease: a warning shortly before it runs out, and what happens to an answer after it did.
 * Measured from the server's own figures (time left at render, or expires_at against the response's
 * Date header), so a wrong clock on the rater's machine does not matter. */

// The banner (leaseBox, its text in leaseMessage) counts down every second; screen readers hear only
// the two changes, through announce. Returns leaseStart(msLeft), for each pair.
export function leaseCountdown(leaseBox, leaseMessage, leaseSeconds, announce) {
  // deadline null: no hold counted (the correction page, whose pair is judged already, never starts one).
  var lease = { deadline: null, state: "" };
  function leaseStart(msLeft) {
    lease.deadline = performance.now() + msLeft;
    lease.state = "";
    leaseBox.hidden = true;
    leaseMessage.textContent = "";
  }
  function leaseTick() {
    if (lease.deadline === null) return;
    var left = lease.deadline - performance.now();
    var warnAt = Math.min(120, leaseSeconds / 4) * 1000;
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
  setInterval(leaseTick, 1000);
  return leaseStart;
}
