"""Flood protection of one socket: the token bucket and the window of recent errors."""

import time

from rooms.flood import ErrorWindow, TokenBucket


def wait_for(condition, deadline_secs: float = 5.0) -> bool:
    """Poll `condition` until it holds or the deadline passes."""
    deadline = time.monotonic() + deadline_secs
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_bucket_allows_a_full_burst():
    bucket = TokenBucket(rate=0.001, burst=5)

    assert [bucket.take() for _ in range(5)] == [True] * 5


def test_bucket_refuses_once_the_burst_is_spent():
    bucket = TokenBucket(rate=0.001, burst=3)
    for _ in range(3):
        bucket.take()

    assert bucket.take() is False


def test_bucket_refills_over_time():
    bucket = TokenBucket(rate=20, burst=2)
    while bucket.take():
        pass

    assert wait_for(bucket.take)


def test_bucket_never_holds_more_than_its_burst():
    bucket = TokenBucket(rate=1, burst=3)
    bucket.stamp -= 100  # as if 100 tokens' worth of idle time had passed

    taken = sum(bucket.take() for _ in range(10))

    assert taken == 3


def test_error_window_tolerates_up_to_max_errors():
    window = ErrorWindow(max_errors=3, window_secs=60)

    assert [window.record() for _ in range(3)] == [False, False, False]


def test_error_window_trips_after_max_errors():
    window = ErrorWindow(max_errors=3, window_secs=60)
    for _ in range(3):
        window.record()

    assert window.record() is True


def test_error_window_forgets_errors_older_than_the_window():
    window = ErrorWindow(max_errors=2, window_secs=0.05)
    window.record()
    window.record()
    time.sleep(0.06)

    assert window.record() is False
