"""CustomTimedRotatingFileHandler on a real directory, with a controllable clock."""

from __future__ import annotations

import datetime
import json
import logging
import os

import pytest

from lab_utils_common.custom_logging import CustomTimedRotatingFileHandler, JsonLinesFormatter


class Clock:
    """A settable time.time() replacement."""

    def __init__(self, when: datetime.datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime.datetime) -> None:
        self.now = when.timestamp()


@pytest.fixture
def logger(isolated_logger):
    return isolated_logger("file-test")


def test_one_file_per_day_named_basename_date_extension(tmp_path, logger):
    clock = Clock(datetime.datetime(2024, 5, 1, 23, 59, 58))
    handler = CustomTimedRotatingFileHandler(str(tmp_path / "logs"), "pump", ".log", clock=clock)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.info("late on the first")
    clock.set(datetime.datetime(2024, 5, 2, 0, 0, 1))
    logger.info("early on the second")
    logger.info("still the second")
    clock.set(datetime.datetime(2024, 5, 4, 12, 0, 0))  # a day with no record is skipped
    logger.info("the fourth")
    files = sorted(os.listdir(tmp_path / "logs"))
    assert files == ["pump_2024-05-01.log", "pump_2024-05-02.log", "pump_2024-05-04.log"]
    assert (tmp_path / "logs" / "pump_2024-05-02.log").read_text() == "early on the second\nstill the second\n"
    assert handler.current_file == str(tmp_path / "logs" / "pump_2024-05-04.log")


def test_directory_is_created_and_home_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    handler = CustomTimedRotatingFileHandler("~/deep/er/logs", "x", ".txt",
                                             clock=Clock(datetime.datetime(2024, 1, 2)))
    handler.close()
    assert (tmp_path / "deep" / "er" / "logs").is_dir()
    assert handler.baseFilename == str(tmp_path / "deep" / "er" / "logs" / "x_2024-01-02.txt")


def test_days_to_keep_deletes_only_this_handlers_old_files(tmp_path, logger):
    folder = tmp_path / "logs"
    folder.mkdir()
    for name in ("pump_2024-04-20.log", "pump_2024-04-28.log", "pump_2024-04-29.log",
                 "pump_2024-04-30.log", "other_2024-01-01.log", "pump_notes.txt"):
        (folder / name).write_text("old\n")
    clock = Clock(datetime.datetime(2024, 5, 1, 10, 0))
    handler = CustomTimedRotatingFileHandler(str(folder), "pump", ".log", days_to_keep=3, clock=clock)
    logger.addHandler(handler)
    assert sorted(os.listdir(folder)) == ["other_2024-01-01.log", "pump_2024-04-29.log",
                                          "pump_2024-04-30.log", "pump_notes.txt"]
    logger.info("first")
    clock.set(datetime.datetime(2024, 5, 2, 0, 0, 5))
    logger.info("second")
    assert sorted(os.listdir(folder)) == ["other_2024-01-01.log", "pump_2024-04-30.log",
                                          "pump_2024-05-01.log", "pump_2024-05-02.log",
                                          "pump_notes.txt"]


def test_days_to_keep_below_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="days_to_keep.*0"):
        CustomTimedRotatingFileHandler(str(tmp_path), "pump", days_to_keep=0)


def test_json_lines_in_the_file(tmp_path, logger):
    clock = Clock(datetime.datetime(2024, 5, 1, 8, 0))
    handler = CustomTimedRotatingFileHandler(str(tmp_path), "pump", clock=clock)
    handler.setFormatter(JsonLinesFormatter())
    logger.addHandler(handler)
    logger.warning("two\nlines", extra={"sensor": "p1"})
    [line] = (tmp_path / "pump_2024-05-01.log").read_text().splitlines()
    document = json.loads(line)
    assert document["message"] == "two\nlines" and document["levelname"] == "WARNING"
    assert document["sensor"] == "p1" and document["name"] == "file-test"
    assert set(document) >= {"asctime", "levelname", "name", "module", "funcName", "message"}
