"""ProgressLog: a line at each tenth of the work or each minute, with rate and ETA, and always one at 100 %.

The clock is a fake one the test moves by hand; the expected lines are written out in full.
"""

from __future__ import annotations

import logging

import pytest

from imitate.io.progress import ProgressLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="test.progress")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "test.progress"]


def progress(total: int, clock: Clock, **kwargs) -> ProgressLog:
    return ProgressLog(logging.getLogger("test.progress"), "shards", total, "images", clock=clock, **kwargs)


def test_a_line_at_each_tenth_with_rate_and_eta(lines):
    clock = Clock()
    p = progress(3000, clock)
    for _ in range(30):  # 100 images per second, one call per 100 images
        clock.now += 1
        p.advance(100)
    assert lines() == [
        "shards: 0/3,000 images (0 %)",
        *(f"shards: {k * 300:,}/3,000 images ({k * 10} %), 100 images/s, ETA 0:00:{30 - 3 * k:02d}"
          for k in range(1, 10)),
        "shards: 3,000/3,000 images (100 %), 100 images/s, in 0:00:30",
    ]


def test_rate_and_eta_are_averages_since_the_start(lines):
    clock = Clock()
    p = progress(3000, clock)
    clock.now += 10
    p.advance(1200)  # 120 images/s so far; 1,800 left take 15 s
    clock.now += 50
    p.advance(600, note="3 rejected")  # 1,800 in 60 s: 30 images/s, 1,200 left take 40 s
    assert lines()[1:] == [
        "shards: 1,200/3,000 images (40 %), 120 images/s, ETA 0:00:15",
        "shards: 1,800/3,000 images (60 %), 30.0 images/s, ETA 0:00:40; 3 rejected",
    ]


def test_a_line_each_interval_between_shares(lines):
    clock = Clock()
    p = progress(10_000, clock)
    for _ in range(5):  # 1 image every 20 s: no tenth is reached, a line every 60 s
        clock.now += 20
        p.advance()
    clock.now += 19
    p.advance()  # 59 s after the last line: none
    assert lines()[1:] == [
        "shards: 3/10,000 images (0 %), 0.05 images/s, ETA 2 days, 7:32:20",
    ]
    clock.now += 1
    p.advance()
    assert lines()[2] == "shards: 7/10,000 images (0 %), 0.0583 images/s, ETA 1 day, 23:35:09"


def test_nothing_between_marks_and_a_skipped_mark_logs_once(lines):
    clock = Clock()
    p = progress(100, clock)
    clock.now += 1
    p.advance(5)  # below 10 %
    p.advance(30)  # 35 %: past three marks, one line
    p.advance(4)  # 39 %: still the 30 % share
    assert [line.split(",")[0] for line in lines()[1:]] == ["shards: 35/100 images (35 %)"]


def test_the_final_line_comes_even_off_a_mark_and_only_once(lines):
    clock = Clock()
    p = progress(10, clock, every_share=0.3, every_seconds=3600)  # marks at 3, 6 and 9: none at 10
    clock.now += 10
    for _ in range(10):
        p.advance()
    p.advance(0)
    assert lines() == [
        "shards: 0/10 images (0 %)",
        "shards: 3/10 images (30 %), 0.3 images/s, ETA 0:00:23",
        "shards: 6/10 images (60 %), 0.6 images/s, ETA 0:00:07",
        "shards: 9/10 images (90 %), 0.9 images/s, ETA 0:00:01",
        "shards: 10/10 images (100 %), 1.0 images/s, in 0:00:10",
    ]
    assert p.finished


def test_zero_total_logs_its_100_percent_line_at_once(lines):
    p = progress(0, Clock())
    assert p.finished
    assert lines() == ["shards: 0/0 images (100 %)"]


def test_percent_rounds_down_so_100_means_done(lines):
    clock = Clock()
    p = progress(1000, clock, every_share=0.001)
    clock.now += 1
    p.advance(999)
    assert lines()[-1].startswith("shards: 999/1,000 images (99 %)")


def test_going_past_the_total_or_back_is_an_error():
    p = progress(3, Clock())
    p.advance(3)
    with pytest.raises(ValueError, match="shards: 4 images done, past the total of 3"):
        p.advance()
    with pytest.raises(ValueError, match="cannot go back"):
        progress(3, Clock()).advance(-1)
    with pytest.raises(ValueError, match="every_share"):
        progress(3, Clock(), every_share=0)
    with pytest.raises(ValueError, match=">= 0"):
        progress(-1, Clock())
