"""Settings of the map viewer (environment prefix ``TERRACAT_VIEWER_``)."""

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BUNDLE_DIR = Path(__file__).resolve().parent / "dist"


class ViewerSettings(BaseSettings):
    """What the viewer page shows and where its built files are."""

    model_config = SettingsConfigDict(
        env_prefix="TERRACAT_VIEWER_", extra="ignore", env_ignore_empty=True
    )

    title: str = Field(default="Terracat", max_length=200, description="The page's title.")
    logo_url: str = Field(
        default="", max_length=2000, description="An image shown before the title; empty: none."
    )
    base_map: str = Field(
        default="",
        max_length=2000,
        description="The base map: empty for none (a graticule on a plain background), an XYZ "
        "URL template with {z}, {x} and {y}, or the URL of a TileJSON document.",
    )
    base_map_attribution: str = Field(default="", max_length=500)
    bundle_dir: Path = Field(
        default=BUNDLE_DIR,
        description="The built page (scripts/bootstrap.sh builds it into server/viewer/dist).",
    )

    @field_validator("logo_url", "base_map")
    @classmethod
    def _http_or_relative(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("http://", "https://", "/")):
            raise ValueError("must be an http(s) URL or a path on this server")
        return value

    def base_map_kind(self) -> str:
        """``none``, ``xyz`` (a URL template) or ``tilejson``."""
        if not self.base_map:
            return "none"
        return "xyz" if "{z}" in self.base_map else "tilejson"
