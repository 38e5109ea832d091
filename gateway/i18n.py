"""The visitor's language: gettext catalogs, negotiation, and locale-aware formatting.

Catalogs are the .po files under templates/locale/<lang>/LC_MESSAGES/, compiled in memory
when the gateway starts, so adding a language is adding a .po file. English is the source.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale, negotiate_locale
from babel.dates import format_time, format_timedelta
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal, get_group_symbol
from babel.support import Translations

SOURCE_LANGUAGE = "en"
LANG_COOKIE = "wr_lang"


def load_catalogs(locale_dir: Path) -> dict[str, Translations]:
    catalogs = {SOURCE_LANGUAGE: Translations()}
    for po in sorted(locale_dir.glob("*/LC_MESSAGES/messages.po")):
        lang = po.parent.parent.name
        with po.open("rb") as f:
            catalog = read_po(f, locale=lang)
        buf = io.BytesIO()
        write_mo(buf, catalog)
        buf.seek(0)
        catalogs[lang] = Translations(buf)
    return catalogs


def parse_accept_language(header: str) -> list[str]:
    """Language tags from an Accept-Language header, most wanted first."""
    weighted: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if math.isfinite(q) and q > 0:
            weighted.append((-q, i, tag))
    return [tag for _, _, tag in sorted(weighted)]


def negotiate(available: Mapping[str, object], cookie: str | None, accept: str) -> str:
    if cookie is not None and cookie in available:
        return cookie
    preferred = parse_accept_language(accept)
    # Try exact tags first ("fr-BE"), then their bare languages ("fr").
    preferred += [tag.split("-")[0] for tag in preferred]
    return negotiate_locale(preferred, list(available), sep="-") or SOURCE_LANGUAGE


class Formatter:
    """Numbers, times and durations written the way the visitor's language writes them.

    Every waiting page and status update writes a few of these, and Babel takes 20-40 µs for
    each: whole numbers take a shortcut that is checked against Babel when the formatter is
    made, and times, durations and ranges (few distinct values at any moment) are remembered.
    """

    def __init__(self, lang: str, ngettext: Callable[[str, str, int], str]) -> None:
        self.lang = lang
        self.ngettext = ngettext
        self._group = _plain_grouping(lang)
        self.clock = functools.lru_cache(maxsize=256)(self._clock)  # type: ignore[method-assign]
        self.duration = functools.lru_cache(maxsize=1024)(self._duration)  # type: ignore[method-assign]
        self._range = functools.lru_cache(maxsize=1024)(self._range_text)

    def number(self, value: int) -> str:
        if self._group is not None and type(value) is int:
            return f"{value:,}".replace(",", self._group)
        return format_decimal(value, locale=self.lang)

    def clock(self, us: int, timezone: str = "UTC") -> str:
        """A time of day as people in `timezone` read it, with the zone's short name."""
        return self._clock(us, timezone)

    def _clock(self, us: int, timezone: str = "UTC") -> str:
        zone = ZoneInfo(timezone)
        moment = datetime.fromtimestamp(us / 1_000_000, UTC).astimezone(zone)
        text = format_time(moment, format="short", tzinfo=zone, locale=self.lang)
        return f"{text} {moment.tzname()}"

    def duration(self, seconds: float) -> str:
        return self._duration(seconds)

    def _duration(self, seconds: float) -> str:
        return format_timedelta(
            max(round(seconds), 60), granularity="minute", threshold=1.5, locale=self.lang
        )

    def wait_range(self, low: float, high: float) -> str:
        """A range a person can read: '5–9 minutes', 'about 2–3 hours', 'under a minute'."""
        if high < 60:
            return self._range(0, 0, "")
        if high <= 90 * 60:
            lo, hi, unit = max(1, math.floor(low / 60)), math.ceil(high / 60), "minute"
        else:
            lo, hi, unit = max(1, math.floor(low / 3600)), math.ceil(high / 3600), "hour"
        if lo >= hi:
            lo = hi - 1 if hi > 1 else hi
        return self._range(lo, hi, unit)

    def _range_text(self, lo: int, hi: int, unit: str) -> str:
        if unit == "minute":
            text = self.ngettext("%(low)s–%(high)s minute", "%(low)s–%(high)s minutes", hi)
        elif unit == "hour":
            text = self.ngettext("%(low)s–%(high)s hour", "%(low)s–%(high)s hours", hi)
        else:
            return self.ngettext("under a minute", "under a minute", 1)
        return text % {"low": self.number(lo), "high": self.number(hi)}


def _plain_grouping(lang: str) -> str | None:
    """The group separator if `lang` writes whole numbers as plain groups of three (as every
    language here does), else None: then Babel formats every number."""
    group = get_group_symbol(locale=lang)
    samples = (0, 7, 999, 1000, 12_345, 999_999, 1_234_567, 10**12, -4321)
    if all(f"{n:,}".replace(",", group) == format_decimal(n, locale=lang) for n in samples):
        return group
    return None


def language_name(lang: str) -> str:
    """The language's name in itself, as a switcher shows it ("čeština", "Nederlands")."""
    name = Locale.parse(lang).get_display_name(lang) or lang
    return name[:1].upper() + name[1:]
