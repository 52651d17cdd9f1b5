"""The REST API's shared pieces, wired in by REST_FRAMEWORK in the settings so that no view
imports them (config is the top layer: apps never import from it).

- `config.api.pagination.CappedCursorPagination`: cursor pages for every list.
- `config.api.errors.api_exception_handler`: domain errors as 400, 404 and 409 answers; and
  `config.api.errors.not_found`, config.urls' handler404: a JSON 404 under `/api/`.
- `config.api.parsers.DepthLimitedJSONParser`: JSON bodies, at most 64 levels deep.
- `config.api.schema.ApiAutoSchema`: the OpenAPI schema, with every operation's errors.
"""
