/* The REST endpoints the page calls, each a POST with the CSRF token whose reply is read as
 * { status, data (the JSON body, {} when none), headers }, whatever the status. */

export function endpoints(csrfToken) {
  function api(url, body) {
    var options = {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
    };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return { status: response.status, data: data || {}, headers: response.headers };
      });
    });
  }
  return {
    judgment: function (assignmentId, body) {
      return api("/api/v1/assignments/" + assignmentId + "/judgment/", body);
    },
    skip: function (assignmentId, body) {
      return api("/api/v1/assignments/" + assignmentId + "/skip/", body);
    },
    next: function (slug) {
      return api("/api/v1/projects/" + encodeURIComponent(slug) + "/next/");
    },
  };
}

// The next pair that came with an answer, as `next` would have answered: 200 with it, or 204 (null).
export function served(r) {
  var pair = r.data.next;
  return { status: pair ? 200 : 204, data: pair || {}, headers: r.headers };
}
