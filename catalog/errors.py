"""Domain errors of the catalogue. Each carries a stable dotted ``code`` and an HTTP status.

The server turns every one into a STAC error body ``{"code": ..., "description": ...}``;
codes are documented in docs/errors.md and never change meaning.
"""

from typing import Any, ClassVar


def error_body(code: str, description: str, **extra: Any) -> dict[str, Any]:
    """The STAC API error object."""
    return {"code": code, "description": description, **extra}


class CatalogError(Exception):
    """Base of every error the catalogue raises on purpose."""

    code: ClassVar[str] = "catalog.Error"
    status: ClassVar[int] = 400
    headers: dict[str, str] | None = None  # response headers the status needs (e.g. 416's)

    def __init__(self, description: str, **detail: Any) -> None:
        super().__init__(description)
        self.description = description
        self.detail = detail


class InvalidParameter(CatalogError):
    """A request parameter that cannot be understood."""

    code = "request.InvalidParameter"


class InvalidValue(InvalidParameter):
    """A value the database cannot hold: a NUL byte in text, a number out of its range."""

    code = "request.InvalidValue"


class InvalidBBox(InvalidParameter):
    """A bbox that is not 4 or 6 numbers in range, or has min above max in latitude."""

    code = "search.InvalidBBox"


class InvalidDatetime(InvalidParameter):
    """A datetime or interval that is not RFC 3339 or whose start is after its end."""

    code = "search.InvalidDatetime"


class InvalidGeometry(InvalidParameter):
    """A GeoJSON geometry that cannot be read."""

    code = "search.InvalidGeometry"


class InvalidFilter(InvalidParameter):
    """A CQL2 filter that does not parse, or uses an operator on the wrong kinds of values."""

    code = "search.InvalidFilter"


class FilterTooLarge(InvalidFilter):
    """A filter or query over a node, depth or list-length limit (TERRACAT_LIMITS_FILTER_*)."""

    code = "search.FilterTooLarge"


class GeometryTooLarge(InvalidGeometry):
    """An ``intersects`` or filter geometry with more vertices than the limit."""

    code = "search.GeometryTooLarge"


class TooManyValues(InvalidParameter):
    """More ``ids``, ``collections``, ``sortby`` keys or ``fields`` than the limit."""

    code = "search.TooManyValues"


class UnknownQueryable(InvalidParameter):
    """A filter, sortby or query names a property that is not queryable here."""

    code = "search.UnknownQueryable"


class InvalidSortBy(InvalidParameter):
    """A sortby field that cannot be sorted on."""

    code = "search.InvalidSortBy"


class InvalidToken(InvalidParameter):
    """A paging token that was not made by this server for this query."""

    code = "search.InvalidToken"


class InvalidLimit(InvalidParameter):
    """A limit outside 1..max_limit."""

    code = "search.InvalidLimit"


class InvalidStac(CatalogError):
    """An item or collection body that is not valid STAC."""

    code = "stac.Invalid"


class NotFound(CatalogError):
    """A collection or item that does not exist."""

    code = "catalog.NotFound"
    status = 404


class Conflict(CatalogError):
    """An id that already exists."""

    code = "catalog.Conflict"
    status = 409


class Unavailable(CatalogError):
    """The database cannot answer right now (down, restarting, timeout, connection lost)."""

    code = "catalog.Unavailable"
    status = 503
    retriable: ClassVar[bool] = True  # a job that met it is tried again
    retry_after_s: ClassVar[int] = 5  # what a client is told to wait (RFC 9110 Retry-After)

    def __init__(self, description: str, **detail: Any) -> None:
        super().__init__(description, **detail)
        self.headers = {"Retry-After": str(self.retry_after_s)}
