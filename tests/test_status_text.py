"""What the polite live region says when a check's answer reaches the page: the new place when
only figures changed, and what happened when the section changed shape."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.pages import Pages
from gateway.settings import REPO_ROOT
from gateway.status import VisitorStatus
from gateway.status_text import banner_for, status_text
from queue_core.estimate import Estimate
from queue_core.rooms import RoomConfig

PAGES = Pages(REPO_ROOT / "templates")
ROOM = RoomConfig("book", ("/book",), title="Vaccination booking")
WAITING = VisitorStatus(
    "book", "waiting", position=4, ahead=3, estimate=Estimate(40, 34, 50), receipt="7-ABCD-EFGH"
)
PAUSED = dataclasses.replace(WAITING, state="paused", estimate=None)
SOLD_OUT = dataclasses.replace(WAITING, sold_out=True)
PLACE = "Your place in line: 4."
BOOKED = (
    "All dates are booked at the moment. You can keep your place: when it is your turn you can "
    "still register without a date, and you will be offered one when new dates are released."
)


def announced(shown: VisitorStatus, now: VisitorStatus, lang: str = "en") -> str:
    """What the page says on getting `now` while it shows `shown`."""
    shown_layout = status_text(PAGES, lang, ROOM, shown, *banner_for(shown, lang)).layout
    return status_text(PAGES, lang, ROOM, now, *banner_for(now, lang), shown_layout).announce


@pytest.mark.parametrize(
    ("shown", "now", "said"),
    [
        pytest.param(WAITING, dataclasses.replace(WAITING, position=3), "Your place in line: 3.",
                     id="moved up"),
        pytest.param(WAITING, dataclasses.replace(WAITING, banner={"en": "Monday."}), PLACE,
                     id="a new banner is no news of the line"),
        pytest.param(WAITING, PAUSED, "The line is paused. Nobody is being let in for a moment. "
                     f"Your place is kept. {PLACE}", id="paused"),
        pytest.param(PAUSED, WAITING, f"The line is moving again. {PLACE}", id="resumed"),
        pytest.param(PAUSED, dataclasses.replace(WAITING, estimate=None),
                     f"The line is moving again. {PLACE}", id="resumed, no estimate yet"),
        pytest.param(WAITING, SOLD_OUT, f"{BOOKED} {PLACE}", id="sold out"),
        pytest.param(PAUSED, SOLD_OUT, f"The line is moving again. {BOOKED} {PLACE}",
                     id="resumed and sold out at once"),
        pytest.param(PAUSED, dataclasses.replace(SOLD_OUT, banner={"en": "Monday."}),
                     f"The line is moving again. {BOOKED} {PLACE}",
                     id="resumed and sold out with a new banner"),
        pytest.param(PAUSED, dataclasses.replace(PAUSED, banner={"en": "Monday."}), PLACE,
                     id="a new banner while paused: still paused, nothing new to say"),
        pytest.param(SOLD_OUT, WAITING, PLACE, id="dates again"),
        pytest.param(WAITING, dataclasses.replace(WAITING, position=9, notice="lapsed"),
                     "Your earlier place has lapsed; you are back in the line. "
                     "Your place in line: 9.", id="lapsed"),
        pytest.param(WAITING, VisitorStatus("book", "closed"), "This waiting room is closed and "
                     "is not letting anyone new into the line right now.", id="closed"),
        pytest.param(WAITING, VisitorStatus("book", "admitted", position=0), "It is your turn",
                     id="your turn"),
    ],
)  # fmt: skip
def test_a_change_of_shape_is_said_in_words(
    shown: VisitorStatus, now: VisitorStatus, said: str
) -> None:
    assert announced(shown, now) == said


def test_announcements_are_in_the_visitors_language() -> None:
    cs = PAGES.catalogs["cs"]
    assert announced(PAUSED, WAITING, "cs") == (
        f"{cs.gettext('The line is moving again.')} "
        + cs.gettext("Your place in line: %(position)s.") % {"position": "4"}
    )
    assert announced(WAITING, PAUSED, "cs").startswith("Fronta je pozastavena.")


def test_a_whole_page_says_just_the_place() -> None:
    # Nothing was shown before it: its live region starts empty and says nothing anyway.
    assert status_text(PAGES, "en", ROOM, PAUSED, None).announce == PLACE
