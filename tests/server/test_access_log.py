"""Access logs of ``terracat serve``: all, sampled (errors always kept) or off (issue 12 #13)."""

import io
import logging
import logging.config
from collections.abc import Iterator

import pytest

from server.cli import QUIET, uvicorn_log_config
from server.settings import ApiSettings

ACCESS = '%s - "%s %s HTTP/%s" %d'


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    """Where uvicorn's access handler writes, under the config ``terracat serve`` gives it."""
    stream = io.StringIO()
    yield stream
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", *QUIET):  # as they were
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


def _configure(api: ApiSettings, stream: io.StringIO) -> logging.Logger:
    config = uvicorn_log_config(api)
    handler = config["handlers"]["access"]
    handler.pop("class")
    handler["()"] = logging.StreamHandler  # uvicorn's writes to the process's stdout
    handler["stream"] = stream
    logging.config.dictConfig(config)
    return logging.getLogger("uvicorn.access")


def _requests(logger: logging.Logger, statuses: list[int]) -> None:
    for i, status in enumerate(statuses):
        logger.info(ACCESS, "127.0.0.1:5000", "GET", f"/tiles/{i}.png", "1.1", status)


def test_all_keeps_every_line(access_lines: io.StringIO) -> None:
    logger = _configure(ApiSettings(), access_lines)
    _requests(logger, [200] * 30 + [404])
    assert len(access_lines.getvalue().splitlines()) == 31


def test_sampled_keeps_one_in_n_and_every_error(access_lines: io.StringIO) -> None:
    logger = _configure(ApiSettings(access_log="sampled", access_log_sample=10), access_lines)
    _requests(logger, [200] * 100 + [404, 500, 204] + [200] * 9 + [422])
    lines = access_lines.getvalue().splitlines()
    kept_errors = [line for line in lines if any(f'" {code} ' in line for code in (404, 500, 422))]
    assert len(kept_errors) == 3
    assert len(lines) - len(kept_errors) == 11  # 110 successes, one of every 10 (first kept)


def test_off_keeps_no_line(access_lines: io.StringIO) -> None:
    logger = _configure(ApiSettings(access_log="off"), access_lines)
    _requests(logger, [200, 404, 500])
    assert access_lines.getvalue() == ""


def test_off_still_configures_and_serve_turns_uvicorns_access_log_off() -> None:
    api = ApiSettings(access_log="off")
    assert api.access_log == "off"
    config = uvicorn_log_config(api)
    assert config["filters"]["access"]["mode"] == "off"
    with pytest.raises(ValueError):
        ApiSettings(access_log="sometimes")  # type: ignore[arg-type]
