"""Files the API hands out (CSV, parquet, xlsx): their media types, and the renderers that let
`?format=csv|parquet|xlsx` through DRF's content negotiation.

A download bypasses rendering (the view returns the file's bytes), so only an error's body (a
400, a 404, a 409) reaches these renderers: it is sent as JSON, like every error of the API.
"""

from __future__ import annotations

from typing import Any

from rest_framework.renderers import BaseRenderer, JSONRenderer

CSV_MIME = "text/csv"
PARQUET_MIME = "application/vnd.apache.parquet"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class DownloadRenderer(BaseRenderer):
    charset = None

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context=None):  # type: ignore[no-untyped-def]
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = JSONRenderer.media_type
        return JSONRenderer().render(data, renderer_context=renderer_context)


class CsvRenderer(DownloadRenderer):
    media_type = CSV_MIME
    format = "csv"


class ParquetRenderer(DownloadRenderer):
    media_type = PARQUET_MIME
    format = "parquet"


class XlsxRenderer(DownloadRenderer):
    media_type = XLSX_MIME
    format = "xlsx"
