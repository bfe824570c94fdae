"""What every package's routes share: the API root of a request, JSON bodies and responses.

The base URL honours the proxy headers and root path: ``server/middleware.py`` and
stac-fastapi's ProxyHeaderMiddleware set them on the ASGI scope before any route runs (from a
trusted proxy's headers only: ``server/proxies.py``), so every link built from ``base_url``
points where the client reached us.
"""

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

import orjson
from stac_fastapi.types.requests import get_base_url
from starlette.requests import Request
from starlette.responses import Response

from .errors import InvalidParameter

JSON = "application/json"


def base_url(request: Request) -> str:
    """The API root of this request, with a trailing slash."""
    url = get_base_url(request)
    return url if url.endswith("/") else url + "/"


def subresource_links(request: Request, collection_id: str, path: str) -> list[dict[str, Any]]:
    """``self`` (the request's own query kept) and ``collection`` links of a JSON document
    served at ``/collections/{collection_id}/{path}``."""
    collection = f"{base_url(request)}collections/{quote(collection_id, safe='')}"
    query = urlencode(list(request.query_params.multi_items()))
    return [
        {
            "rel": "self",
            "type": JSON,
            "href": f"{collection}/{path}" + (f"?{query}" if query else ""),
        },
        {"rel": "collection", "type": JSON, "href": collection},
    ]


def json_response(
    doc: Any,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    media_type: str = JSON,
) -> Response:
    """A JSON response serialized once with orjson.

    Returning the dict instead would make FastAPI walk it with ``jsonable_encoder`` before
    serializing: a third of the time of a 100-item page.
    """
    return Response(orjson.dumps(doc), status, headers, media_type)


async def read_json(request: Request) -> Any:
    """The request's JSON body; an empty or malformed one is ``request.InvalidParameter``.

    ``request.json()`` keeps what FastAPI parsed for the route's body parameter, so the body is
    parsed once; the STAC routes parse it with orjson (server.middleware.OrjsonRoute).
    """
    body = await request.body()
    if not body.strip():
        raise InvalidParameter("the request needs a JSON body")
    try:
        return await request.json()
    except ValueError as exc:  # json's and orjson's JSONDecodeError
        raise InvalidParameter(f"the request body is not JSON: {exc}") from exc
