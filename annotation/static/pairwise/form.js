/* The answer form: its radio buttons, the strength scale switched off for a tie, what an answer still
 * lacks before it can be sent, and the errors shown above the form. */

// form: #judge-form; config: the page's settings (allowTie, strengthLevels, rationale).
export function answerForm(form, config, rationaleBox, errorsBox) {
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

  function showErrors(messages) {
    errorsBox.replaceChildren();
    messages.forEach(function (message) {
      var p = document.createElement("p");
      p.textContent = message;
      errorsBox.append(p);
    });
    errorsBox.hidden = messages.length === 0;
  }

  // What the answer lacks, as [message, the field to focus], or null when it can be sent.
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

  // The answer's body for the API (without next).
  function answer(clientTimeMs) {
    var choice = checkedValue("choice");
    var body = { choice: choice, client_time_ms: clientTimeMs };
    if (config.strengthLevels > 0 && choice !== "tie") body.strength = Number(checkedValue("strength"));
    if (config.rationale !== "off") body.rationale = rationaleBox.value;
    return body;
  }

  // Nothing carries over from one pair to the next: no choice is ever made for the rater.
  function clear() {
    form.reset();
    radios("choice").forEach(function (r) { r.checked = false; });
    radios("strength").forEach(function (r) { r.checked = false; });
    if (rationaleBox) rationaleBox.value = "";
    syncStrength();
  }

  return { pick: pick, missing: missing, answer: answer, showErrors: showErrors, clear: clear };
}
