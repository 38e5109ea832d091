"""The words of a visitor's status, in their language, written in one place.

The page, the script's in-place updates and the screen reader's announcement all read these,
so a visitor with JavaScript and one without see exactly the same words. Between two checks
of someone waiting, usually only the figures change, not the shape of the section around them
(state, notices, banner): `layout` names that shape, so the page's script is sent
just the new figures while its layout still holds, and the whole section only when it changed.
When it changed, the live region says what happened (paused, moving again, sold out, the
place lapsed, closed, your turn), not only the new place.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from queue_core.rooms import RoomConfig

from .pages import Pages
from .status import VisitorStatus

# States whose section keeps its shape from one check to the next: only figures change.
FILLABLE = frozenset({"waiting", "paused"})


@dataclass(frozen=True, slots=True)
class StatusText:
    layout: str  # "" when the section has to be written out whole every time
    title: str
    position: str
    ahead: str
    estimate: str
    updated: str
    announce: str  # what the polite live region says when this status reaches the page
    receipt: str

    def fill(self) -> dict[str, str]:
        """The page elements that change between checks, by id, with their new text."""
        return {
            "wr-position": self.position,
            "wr-ahead": self.ahead,
            "wr-estimate": self.estimate,
            "wr-updated": self.updated,
            "wr-receipt": self.receipt,
        }


def banner_for(status: VisitorStatus, lang: str) -> tuple[str | None, str]:
    """The announcement in the visitor's language, else in English, and the language it is in
    (a screen reader reads a fallback with English sounds only if the page says so)."""
    if lang in status.banner:
        return status.banner[lang], lang
    return status.banner.get("en"), "en"


def status_text(
    pages: Pages,
    lang: str,
    room: RoomConfig,
    status: VisitorStatus,
    banner: str | None,
    banner_lang: str = "",
    shown_layout: str | None = None,
) -> StatusText:
    """`shown_layout` is the layout of the section the page shows now (None for a whole page):
    when this status has another, the announcement says what changed."""
    fmt = pages.formatter(lang)
    position = "" if status.position is None else fmt.number(status.position)
    if status.state == "admitted":
        heading = pages.translate(lang, "It is your turn")
        announce = heading
    elif status.position:
        heading = pages.translate(lang, "Place %(position)s in line") % {"position": position}
        announce = pages.translate(lang, "Your place in line: %(position)s.") % {
            "position": position
        }
    else:
        heading = announce = ""
    title = " – ".join(
        t for t in (heading, room.title or pages.translate(lang, "Waiting room")) if t
    )
    if status.estimate is not None:
        estimate = fmt.wait_range(status.estimate.low, status.estimate.high)
    elif status.state == "paused":
        estimate = pages.translate(lang, "unknown while paused")
    else:
        estimate = pages.translate(lang, "not known yet")
    updated = ""
    if status.as_of_us:
        updated = pages.translate(lang, "Updated at %(time)s.") % {
            "time": fmt.clock(status.as_of_us, room.timezone)
        }
    shape = layout(lang, status, banner, banner_lang)
    if shown_layout is not None and shown_layout != shape:
        news = change_announcement(pages, lang, status, shown_layout)
        announce = " ".join([*news, announce]).strip()
    return StatusText(
        layout=shape,
        title=title,
        position=position,
        ahead="" if status.ahead is None else fmt.number(status.ahead),
        estimate=estimate,
        updated=updated,
        announce=announce,
        receipt=status.receipt or "",
    )


def layout(lang: str, status: VisitorStatus, banner: str | None, banner_lang: str = "") -> str:
    """A short name for everything that shapes the section apart from its figures: the state
    and its notices in words (so a page's next check says what the page shows), and a hash of
    the rest, e.g. "paused+sold-out:4f1c0a9b2e77"."""
    if status.state not in FILLABLE:
        return ""
    shape = "\x00".join(
        (
            lang,
            status.state,
            status.notice or "",
            "sold-out" if status.sold_out else "",
            "stale" if status.stale else "",
            "estimate" if status.estimate is not None else "",
            "receipt" if status.receipt else "",
            banner or "",
            banner_lang if banner else "",
        )
    )
    words = [status.state, *([status.notice] if status.notice else [])]
    if status.sold_out:
        words.append("sold-out")
    return "+".join(words) + ":" + hashlib.blake2s(shape.encode(), digest_size=6).hexdigest()


def change_announcement(
    pages: Pages, lang: str, status: VisitorStatus, shown_layout: str
) -> list[str]:
    """What changed, in sentences, when the section changes shape (the place is told after
    them), judged from the words of the layout the page showed."""

    def _(message: str) -> str:  # the name pybabel extracts
        return pages.translate(lang, message)

    shown = set(shown_layout.partition(":")[0].split("+"))
    if status.state == "closed":
        return [
            _("This waiting room is closed and is not letting anyone new into the line right now.")
        ]
    if status.state not in FILLABLE:
        return []  # your turn says itself; a scheduled opening has no place to tell yet
    news: list[str] = []
    if status.notice == "lapsed" and "lapsed" not in shown:
        news.append(_("Your earlier place has lapsed; you are back in the line."))
    if status.state == "paused" and "paused" not in shown:
        news += [
            _("The line is paused."),
            _("Nobody is being let in for a moment. Your place is kept."),
        ]
    if status.state == "waiting" and "paused" in shown:
        news.append(_("The line is moving again."))
    if status.sold_out and "sold-out" not in shown:
        news += [
            _("All dates are booked at the moment."),
            _(
                "You can keep your place: when it is your turn you can still register without a "
                "date, and you will be offered one when new dates are released."
            ),
        ]
    return news
