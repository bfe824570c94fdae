"""The shared test apps (tests/apps.py) hand every test an app without another test's state."""

from server.settings import Settings
from tests.apps import AppPool, route_caches


def test_a_client_leaves_no_route_cache_entry_behind(apps: AppPool, settings: Settings) -> None:
    with apps.client(settings) as client:
        caches = route_caches(apps.app(settings))
        assert caches, "the item maps' item cache was not found among the routes"
        for cache in caches:
            cache[("c", "i")] = {"id": "i"}
        assert client.get("/_mgmt/ping").status_code == 200
    assert all(len(cache) == 0 for cache in caches)


def test_equal_settings_share_an_app_and_changed_ones_do_not(
    apps: AppPool, settings: Settings
) -> None:
    first = apps.app(settings)
    assert apps.app(settings.model_copy(deep=True)) is first
    changed = settings.model_copy(deep=True)
    changed.tiler.item_cache_ttl_s = 0.5
    assert apps.app(changed) is not first
