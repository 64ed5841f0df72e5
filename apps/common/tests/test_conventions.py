from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from moviestream_common.conventions import access_log, log_access

TIME_ATTRIBUTES = {"created", "msecs", "relativeCreated"}
SECONDS = 0.0012345
FIELDS = {"method": "GET", "path": "/api/movies/7", "status": 200, "duration_ms": 1.234, "request_id": "trace-1"}


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> Iterator[Keep]:
    keep = Keep()
    monkeypatch.setattr(access_log, "propagate", False)
    monkeypatch.setattr(access_log, "level", logging.INFO)
    access_log.addHandler(keep)
    yield keep
    access_log.removeHandler(keep)
    access_log.filters.clear()


def _log_access() -> None:
    log_access(FIELDS["method"], FIELDS["path"], FIELDS["status"], SECONDS, FIELDS["request_id"])


@pytest.mark.parametrize("caller_lookup", [False, True])
def test_the_access_record_is_the_one_logger_info_with_extra_makes(kept, monkeypatch, caller_lookup) -> None:
    # configure_logging turns logging's caller lookup off (logging._srcfile); the lines show no caller either way.
    if not caller_lookup:
        monkeypatch.setattr(logging, "_srcfile", None)
    _log_access()
    access_log.info("request", extra=FIELDS)
    made, reference = (vars(record) for record in kept.records)
    shown = (
        set(reference)
        - TIME_ATTRIBUTES
        - ({"pathname", "filename", "module", "lineno", "funcName"} if caller_lookup else set())
    )
    assert {key: made[key] for key in shown} == {key: reference[key] for key in shown}
    assert set(made) == set(reference)
    assert made["msg"] == "request"


def test_the_access_record_keeps_the_logger_s_level_and_filters(kept) -> None:
    access_log.setLevel(logging.WARNING)
    _log_access()
    access_log.setLevel(logging.INFO)
    access_log.addFilter(lambda record: record.status != 200)
    _log_access()
    assert kept.records == []
    access_log.filters.clear()
    _log_access()
    assert [record.status for record in kept.records] == [200]
