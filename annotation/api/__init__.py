"""The REST API (see API.md): thin DRF views over annotation.services and annotation.selectors."""
