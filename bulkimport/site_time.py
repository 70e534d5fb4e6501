"""The site's time zone (the TIME_ZONE setting): administrators write and read times in it,
while the database keeps naive UTC like every other time."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app

DATETIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S",
                    "%Y-%m-%dT%H:%M:%S")


def zone_name() -> str:
    """The site's time zone's name (the TIME_ZONE setting)."""
    return current_app.config["TIME_ZONE"]


def site_zone() -> ZoneInfo:
    """The site's time zone, in which administrators write and read sending times (checked
    when the configuration is loaded)."""
    return ZoneInfo(zone_name())


def to_utc(local: datetime) -> datetime:
    """A time written in the site's time zone, as the naive UTC the database keeps."""
    return local.replace(tzinfo=site_zone()).astimezone(UTC).replace(tzinfo=None)


def local_text(moment: datetime | None) -> str:
    """A stored (naive UTC) time as the site's time zone writes it."""
    return "" if moment is None else zoned_text(moment, zone_name())


def zoned_text(moment: datetime, zone: str) -> str:
    """A naive UTC time as `zone` writes it, naming the zone: 2027-01-04 08:00 Europe/Berlin."""
    local = moment.replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
    return f"{local:%Y-%m-%d %H:%M} {zone}"


def parse_local(text: str) -> datetime | None:
    """A date and time such as 2027-01-04 08:00 (or a browser's 2027-01-04T08:00), or None."""
    for form in DATETIME_FORMATS:
        try:
            return datetime.strptime(text.strip(), form)
        except ValueError:
            continue
    return None
