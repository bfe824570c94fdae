"""Apps shared between tests: built once per distinct settings, started anew for every test.

Building an app costs 1-2.5 s of CPU (FastAPI analyses the dependencies of ~100 routes; the
titiler factories most of it), which was most of an API test's time. What a test may change is
state, not the app: every ``client`` runs the app's lifespan again (a new engine, repositories,
job and upload state, mosaic and queryable caches), the route dependencies' own caches are
emptied after the test, the database is truncated (tests/conftest.py) and the data folder
emptied. Tests that need other settings get another app, shared in turn.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.testclient import TestClient
from pydantic import BaseModel, SecretStr

from server.parts import api_routes

if TYPE_CHECKING:
    from server.settings import Settings


def settings_key(value: Any) -> Any:
    """A hashable rendering of settings that, unlike their JSON dump, keeps secrets apart."""
    if isinstance(value, BaseModel):
        value = dict(value)
    if isinstance(value, dict):
        return tuple(sorted((k, settings_key(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(settings_key(v) for v in value)
    if isinstance(value, SecretStr):
        return ("secret", value.get_secret_value())
    return repr(value) if not isinstance(value, int | float | str | bool | None) else value


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def route_caches(app: FastAPI) -> list[Any]:
    """The caches route dependencies keep between requests (e.g. the item cache of the map
    routes), which a lifespan does not renew; routes of included routers too."""
    found: dict[int, Any] = {}
    for _, route in api_routes(app.routes):
        for dependant in _dependants(route.dependant):
            cache = getattr(dependant.call, "cache", None)
            if cache is not None and callable(getattr(cache, "clear", None)):
                found[id(cache)] = cache
    return list(found.values())


def clear_route_caches(app: FastAPI) -> None:
    """Empty the caches of ``route_caches``."""
    for cache in route_caches(app):
        cache.clear()


class AppPool:
    """Apps by settings, each built on the first test that asks for it."""

    def __init__(self) -> None:
        self._apps: dict[Any, FastAPI] = {}

    def app(self, settings: "Settings") -> FastAPI:
        """The app for settings equal to these (a copy: the test may change its own later)."""
        from server.app import create_app

        key = settings_key(settings)
        if key not in self._apps:
            self._apps[key] = create_app(settings.model_copy(deep=True))
        return self._apps[key]

    @contextmanager
    def client(self, settings: "Settings", **options: Any) -> Iterator[TestClient]:
        """A TestClient on the shared app, its lifespan run for this client alone."""
        app = self.app(settings)
        try:
            with TestClient(app, **options) as test_client:
                yield test_client
        finally:
            clear_route_caches(app)
            app.dependency_overrides.clear()
