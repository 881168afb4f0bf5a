/* Model text onto the page: the same rule as annotation/pages/text.py (segments), fenced code blocks
 * apart from prose. Text only ever enters the page through textContent. */

var FENCE = /^ {0,3}(`{3,}|~{3,})/;

function segments(text) {
  var pieces = [];
  var lines = [];
  var fence = "";
  function flush(kind) {
    var chunk = lines.join("\n").replace(/^\n+|\n+$/g, "");
    if (chunk) pieces.push({ kind: kind, text: chunk });
    lines = [];
  }
  text.replace(/\r\n/g, "\n").split("\n").forEach(function (line) {
    var match = FENCE.exec(line);
    if (!fence && match) {
      flush("prose");
      fence = match[1];
      lines.push(line);
    } else if (fence && match && match[1][0] === fence[0] && match[1].length >= fence.length &&
               line.trim() === match[1]) {
      lines.push(line);
      flush("code");
      fence = "";
    } else {
      lines.push(line);
    }
  });
  flush(fence ? "code" : "prose");
  return pieces;
}

// id: prompt, left or right (the box is #text-<id>).
export function showText(id, text) {
  var box = document.getElementById("text-" + id);
  box.replaceChildren();
  if (text.trim() === "") {
    var marker = document.createElement("p");
    marker.className = "marker";
    marker.textContent = text === "" ? "(empty response)" : "(only whitespace)";
    box.append(marker);
  } else {
    segments(text).forEach(function (piece) {
      var node = document.createElement(piece.kind === "code" ? "pre" : "div");
      node.className = piece.kind === "code" ? "code" : "prose";
      node.textContent = piece.text;
      box.append(node);
    });
  }
  box.scrollTop = 0;
}
