"""Why a datacube tile request was refused. Codes are stable (docs/errors.md)."""

from __future__ import annotations

from ..errors import TilerError


class CubeError(TilerError):
    """A datacube request that cannot be answered as asked."""

    code = "cube.Error"


class UnknownLayer(CubeError):
    """``layers`` names no variable, band, common name, Sentinel-2 id or preset of the cube."""

    code = "cube.UnknownLayer"


class DatetimeOutsideCube(CubeError):
    """``datetime`` before the cube's first or after its last time (or a cube without time)."""

    code = "cube.DatetimeOutsideCube"


class DatetimeNotInCube(CubeError):
    """``datetime_match=exact`` with an instant that is not one of the cube's times."""

    code = "cube.DatetimeNotInCube"


class InvalidAggregation(CubeError):
    """A ``temporal_aggregation`` or ``datetime_match`` other than the ones offered."""

    code = "cube.InvalidAggregation"


class TooManySlices(CubeError):
    """An interval holding more time slices than one tile may reduce."""

    code = "cube.TooManySlices"
