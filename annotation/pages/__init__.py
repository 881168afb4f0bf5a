"""The rater's pages in the browser: server-rendered templates over the same services as the API."""
