"""app/clock.py: the one way the service writes time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from app.clock import epoch, now_text, utc_text

offsets = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets)


@given(moments)
def test_utc_text_is_iso_8601_in_utc_with_milliseconds_and_z(moment: datetime):
    expected = moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert utc_text(moment) == expected


def test_utc_text_reads_back_as_the_same_instant_to_the_millisecond():
    moment = datetime(2015, 6, 4, 14, 2, 0, 134_999, tzinfo=timezone(timedelta(hours=1)))
    assert utc_text(moment) == "2015-06-04T13:02:00.134Z"
    assert epoch(utc_text(moment)) == moment.replace(microsecond=134_000).timestamp()


def test_now_text_is_utc_text_of_now():
    for _ in range(1000):  # across millisecond (and, now and then, second) boundaries
        before = utc_text(datetime.now(UTC))
        now = now_text()
        after = utc_text(datetime.now(UTC))
        assert before <= now <= after and len(now) == len(before)
        assert utc_text(datetime.fromisoformat(now)) == now
