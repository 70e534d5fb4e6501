"""When a batch's invitations go: now, at one date and time, or on each row's date from a column
of the file (a start date). Times are written and shown in the site's time zone (TIME_ZONE) and
stored in UTC, like every time in the database; a time already past means now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from ..clock import utcnow
from ..profile import parse_date
from ..site_time import local_text, parse_local, to_utc, zone_name

NOW, AT, COLUMN = "now", "at", "column"
WHEN = (NOW, AT, COLUMN)
DEFAULT_TIME = "08:00"
SEND_AT = "_send_at"  # the key of a row's sending time (UTC, ISO) in its staged values


class ScheduleError(ValueError):
    """A sending time or column that cannot be used; the message says why."""


@dataclass(frozen=True)
class Schedule:
    """The administrator's choice: `when` is now, at (`at`, UTC) or column (`column` is the
    heading, `time` the local time of day for dates without one)."""

    when: str = NOW
    at: datetime | None = None
    column: str | None = None
    time: str = DEFAULT_TIME

    def to_json(self) -> dict[str, Any] | None:
        """The form kept in a batch's notes; None for now (the default)."""
        if self.when == NOW:
            return None
        return {"when": self.when, "at": self.at.isoformat() if self.at else None,
                "column": self.column, "time": self.time}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Schedule:
        """The schedule kept by `to_json`."""
        if not data:
            return cls()
        return cls(data["when"], datetime.fromisoformat(data["at"]) if data.get("at") else None,
                   data.get("column"), data.get("time") or DEFAULT_TIME)

    def describe(self) -> str:
        """The choice in words, in the site's time zone, to follow "Invitations go"."""
        if self.when == AT:
            return f"at {local_text(self.at)}"
        if self.when == COLUMN:
            return (f"on each row's date in “{self.column}”, at {self.time} {zone_name()} when "
                    "it gives no time; rows with no date or a past one go now")
        return "now, as soon as the file is submitted"


def parse_time(text: str) -> str:
    """A time of day as HH:MM; raises ScheduleError."""
    try:
        return time.fromisoformat(text.strip()).strftime("%H:%M")
    except ValueError:
        raise ScheduleError(f"“{text}” is not a time of day such as 08:00.") from None


def build(when: str, at: str = "", column: str = "", time_of_day: str = "",
          headings: list[str] | tuple[str, ...] = ()) -> Schedule:
    """The schedule the review form or the CLI asks for, checked: a time to come, a column the
    file has; raises ScheduleError naming what is wrong."""
    if when not in WHEN:
        raise ScheduleError("Choose when the invitations go: now, at a date and time, or on "
                            "each row's date.")
    if when == AT:
        if not (at or "").strip():
            raise ScheduleError("Enter the date and time, such as 2027-01-04 08:00.")
        local = parse_local(at)
        if local is None:
            raise ScheduleError(f"“{at}” is not a date and time such as 2027-01-04 08:00.")
        moment = to_utc(local)
        if moment <= utcnow():
            raise ScheduleError(f"{local:%Y-%m-%d %H:%M} {zone_name()} has passed: choose a "
                                "later time, or Now.")
        return Schedule(AT, at=moment)
    if when == COLUMN:
        if column not in headings:
            raise ScheduleError(f"The file has no column “{column}”: choose one of "
                                f"{', '.join(headings)}.")
        return Schedule(COLUMN, column=column, time=parse_time(time_of_day or DEFAULT_TIME))
    return Schedule()


def mark_rows(rows, headings: list[str], schedule: Schedule, date_order: str) -> None:
    """Give each row to add its sending time (SEND_AT, UTC) from the schedule's column: a date
    (or a date and time) in the site's time zone. An unreadable date makes the row an error
    naming the column; an empty cell or a date past leaves the row to go now."""
    if schedule.when != COLUMN or schedule.column not in headings:
        return
    index = headings.index(schedule.column)
    hour = time.fromisoformat(schedule.time)
    now = utcnow()
    for row in rows:
        if row.action != "add":
            continue
        cell = (row.raw[index] if index < len(row.raw) else "").strip()
        if not cell:
            continue
        local = parse_local(cell)
        if local is None:
            day = parse_date(cell, date_order)
            local = datetime.combine(datetime.fromisoformat(day), hour) if day else None
        if local is None:
            slashed = "01/31/2027" if date_order == "MDY" else "31/01/2027"
            row.errors.append(f"{schedule.column} “{cell}” is not a date for sending the "
                              f"invitation (write 2027-01-31 or {slashed}, with or without a "
                              "time such as 08:00).")
            row.action = "error"
            continue
        moment = to_utc(local)
        if moment > now:
            row.values[SEND_AT] = moment.isoformat()


def send_time(schedule: Schedule, values: dict[str, Any] | None) -> datetime | None:
    """When a new user's invitation goes (UTC), or None for now."""
    now = utcnow()
    if schedule.when == AT:
        moment = schedule.at
    elif schedule.when == COLUMN and values and values.get(SEND_AT):
        moment = datetime.fromisoformat(values[SEND_AT])
    else:
        return None
    return moment if moment and moment > now else None
