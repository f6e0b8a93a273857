"""ReadAhead: files read a window ahead, each failure blamed on its own file."""

from __future__ import annotations

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from deid_workers.tasks.readahead import ReadAhead

PATHS = [f"f{i}" for i in range(7)]


def _reader(log, fail=(), stop=()):
    def read(rel):
        log.append(rel)
        if rel in fail:
            raise ValueError(rel)
        if rel in stop:
            raise SoftTimeLimitExceeded()
        return rel.upper()
    return read


def test_reads_a_window_before_the_first_file_is_taken_and_hands_each_window_on():
    log, windows = [], []
    ahead = ReadAhead(PATHS, _reader(log), window=3, then=windows.append)
    assert ahead.take("f0") == "F0"
    assert log == ["f0", "f1", "f2"] and windows == [["F0", "F1", "F2"]]
    assert [ahead.take(p) for p in PATHS[1:]] == ["F1", "F2", "F3", "F4", "F5", "F6"]
    assert log == PATHS  # every file read once, in order
    assert windows == [["F0", "F1", "F2"], ["F3", "F4", "F5"], ["F6"]]


def test_a_read_that_raised_raises_when_its_own_file_is_taken():
    log, windows = [], []
    ahead = ReadAhead(PATHS, _reader(log, fail={"f1"}), window=3, then=windows.append)
    assert ahead.take("f0") == "F0"  # f1 failed while f0 opened the window: f0 is fine
    assert windows == [["F0", "F2"]]  # a failed read has nothing for the window
    with pytest.raises(ValueError, match="f1"):
        ahead.take("f1")
    assert ahead.take("f2") == "F2"


def test_window_one_reads_each_file_when_it_is_taken():
    log = []
    ahead = ReadAhead(PATHS, _reader(log), window=1)
    for i, rel in enumerate(PATHS[:3]):
        assert ahead.take(rel) == rel.upper()
        assert log == PATHS[:i + 1]


def test_a_file_taken_past_the_window_opens_its_own():
    log = []
    ahead = ReadAhead(PATHS, _reader(log), window=2)
    assert ahead.take("f0") == "F0"
    assert ahead.take("f3") == "F3"  # [f0, f1] was read; f3 opens [f3, f4]
    assert log == ["f0", "f1", "f3", "f4"]


def test_a_soft_time_limit_is_not_held_back_for_a_later_file():
    ahead = ReadAhead(PATHS, _reader([], stop={"f2"}), window=3)
    with pytest.raises(SoftTimeLimitExceeded):
        ahead.take("f0")


def test_a_window_stops_at_its_byte_budget_and_a_big_file_is_read_alone():
    log, windows = [], []
    sizes = {"f0": 4, "f1": 4, "f2": 4, "f3": 100, "f4": 1, "f5": 1, "f6": 1}
    ahead = ReadAhead(PATHS, _reader(log), window=4, then=windows.append,
                      weigh=sizes.__getitem__, budget=8)
    assert [ahead.take(p) for p in PATHS] == [p.upper() for p in PATHS]
    assert windows == [["F0", "F1"], ["F2", "F3"], ["F4", "F5", "F6"]]
    ahead = ReadAhead(["f3", "f4"], _reader([]), window=4, then=windows.append,
                      weigh=sizes.__getitem__, budget=8)
    ahead.take("f3")
    assert windows[-1] == ["F3"]
