import logging

from stream_app.worker.dead_letter_log import DeadLetterLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "stream_app.worker.dead_letter_log"]


def test_the_first_dead_letter_is_logged_at_once_and_a_flood_is_one_line_per_interval(caplog):
    caplog.set_level(logging.WARNING)
    clock = Clock()
    letters = DeadLetterLog("t.deadletter", interval_s=10.0, clock=clock)
    letters.add({"schema": 1})
    assert lines(caplog) == [
        "dead letters: 1 more to t.deadletter (schema 1); logged at most every 10 s, all of them counted in "
        "istream_dead_letters_total"
    ]
    for _ in range(1200):
        clock.now += 0.005
        letters.add({"schema": 1, "late": 0})
    letters.add({"late": 4})
    assert len(lines(caplog)) == 1  # 6 s later: still within the interval
    clock.now += 4.5
    letters.tick()
    assert len(lines(caplog)) == 2 and lines(caplog)[1].startswith(
        "dead letters: 1,204 more to t.deadletter (schema 1,200, late 4)"
    )
    letters.tick()
    letters.flush()
    assert len(lines(caplog)) == 2  # nothing new to say


def test_flush_logs_what_the_interval_held_back(caplog):
    caplog.set_level(logging.WARNING)
    clock = Clock()
    letters = DeadLetterLog("t.deadletter", interval_s=10.0, clock=clock)
    letters.add({"key": 2})
    clock.now += 1
    letters.add({"empty": 1})
    letters.flush()
    assert [line.split(";")[0] for line in lines(caplog)] == [
        "dead letters: 2 more to t.deadletter (key 2)",
        "dead letters: 1 more to t.deadletter (empty 1)",
    ]
