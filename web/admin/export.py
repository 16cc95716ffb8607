"""The provisioning log's export as an HTTP answer, streamed: the console's and the admin API's."""

from __future__ import annotations

from starlette.datastructures import QueryParams
from starlette.responses import StreamingResponse

from storage.common import now
from web.admin.service import EXPORT_FORMATS, AdminService, export_format, log_query_of


def export_response(service: AdminService, params: QueryParams) -> StreamingResponse:
    """The records the log filters in `params` match (as the log page and /v1/admin/logs read them,
    `q` the text), every one of them, as CSV (`format=csv`, the default) or NDJSON, sent as the
    store gives them a batch at a time (chunked: the size is not known ahead). AdminError 400 for
    a bad filter or format."""
    fmt = export_format(params.get("format"))
    query = log_query_of(params)
    stamp = now().replace(":", "").replace("-", "").split(".")[0]
    return StreamingResponse(
        service.export_logs(query, fmt),
        media_type=EXPORT_FORMATS[fmt],
        headers={
            "Content-Disposition": f'attachment; filename="scimlet-log-{stamp}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )
