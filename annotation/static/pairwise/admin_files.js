// The admin's upload form with a progress bar: the same POST as without script, sent by XMLHttpRequest
// so that its upload progress can be shown; the answer (the page again, with its message or its errors)
// then replaces this one. Without script the form posts as it is, and the browser shows its own progress.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const status = document.getElementById("upload-status");
  const bar = document.getElementById("upload-progress");
  const limit = Number(form.dataset.limitBytes);
  const button = form.querySelector("button[type=submit]");

  form.addEventListener("submit", (event) => {
    const input = form.querySelector("input[type=file]");
    const file = input && input.files && input.files[0];
    if (!file) return; // the server says what is missing
    event.preventDefault();
    if (limit && file.size > limit) {
      status.textContent = `The file is ${file.size} bytes; the limit is ${limit}. Split it; nothing was sent.`;
      return;
    }
    const request = new XMLHttpRequest();
    request.open("POST", form.action || window.location.href);
    request.upload.addEventListener("progress", (progress) => {
      if (!progress.lengthComputable) return;
      const percent = Math.floor((100 * progress.loaded) / progress.total);
      bar.value = percent;
      bar.textContent = `${percent}%`;
      status.textContent = percent < 100 ? `Uploading: ${percent}%` : "Checking and storing the items…";
    });
    request.addEventListener("load", () => {
      // The server's answer is a whole admin page: show it as it is, at its own address.
      document.open();
      document.write(request.responseText);
      document.close();
      if (request.responseURL) window.history.replaceState(null, "", request.responseURL);
    });
    request.addEventListener("error", () => {
      button.disabled = false;
      bar.hidden = true;
      status.textContent = "The upload failed (the connection was lost); nothing may have been stored. Try again.";
    });
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    status.textContent = "Uploading: 0%";
    request.send(new FormData(form));
  });
});
