"""Languages: every catalog complete and faithful to its placeholders; negotiation; formats."""

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from gateway.i18n import Formatter, load_catalogs, negotiate, parse_accept_language

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCALE_DIR = REPO_ROOT / "templates" / "locale"
# As the README's `pybabel extract -F babel.cfg -k translate:2` runs it.
KEYWORDS = {**DEFAULT_KEYWORDS, "translate": (2,)}
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
LANGS = ["cs", "de", "fr", "nl"]


def test_at_least_the_five_languages_are_there() -> None:
    assert set(load_catalogs(LOCALE_DIR)) >= {"en", "cs", "de", "fr", "nl"}


def test_the_template_holds_exactly_the_messages_in_the_code() -> None:
    """A string added to a page or to the code but not extracted would stay English in every
    language (the catalog test below only checks what messages.pot lists)."""
    with (REPO_ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    in_code = {
        message
        for _, _, message, _, _ in extract_from_dir(
            REPO_ROOT, method_map, options_map, keywords=KEYWORDS
        )
    }
    in_template = {m.id for m in read_po((LOCALE_DIR / "messages.pot").open("rb")) if m.id}
    new, gone = sorted(map(str, in_code - in_template)), sorted(map(str, in_template - in_code))
    assert not new, f"not in messages.pot yet (run the README's pybabel extract): {new}"
    assert not gone, f"in messages.pot but no longer used (extract again): {gone}"


@pytest.mark.parametrize("lang", LANGS)
def test_catalog_translates_every_message_with_the_same_placeholders(lang: str) -> None:
    template = read_po((LOCALE_DIR / "messages.pot").open("rb"))
    catalog = read_po((LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb"), locale=lang)
    for message in template:
        if not message.id:
            continue
        translated = catalog.get(message.id)
        assert translated is not None, f"{lang}: missing {message.id!r}"
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = (
            translated.string if isinstance(translated.string, tuple) else (translated.string,)
        )
        expected = set(PLACEHOLDER.findall(ids[-1]))
        for s in strings:
            assert s, f"{lang}: untranslated {ids[0]!r}"
            assert set(PLACEHOLDER.findall(s)) == expected, f"{lang}: placeholders in {s!r}"


@pytest.mark.parametrize(
    ("cookie", "accept", "expected"),
    [
        (None, "cs-CZ,cs;q=0.9,en;q=0.8", "cs"),
        (None, "fr-BE,fr;q=0.9", "fr"),
        (None, "nl-BE", "nl"),
        (None, "pl,de;q=0.5", "de"),
        (None, "de;q=0, fr;q=0.1", "fr"),
        (None, "", "en"),
        (None, "xx-garbage;q=abc, ;;;", "en"),
        ("nl", "cs", "nl"),  # the switcher's choice sticks
        ("klingon", "cs", "cs"),  # an unknown cookie is ignored
    ],
)
def test_negotiation(cookie: str | None, accept: str, expected: str) -> None:
    available = {"en": 1, "cs": 1, "de": 1, "fr": 1, "nl": 1}
    assert negotiate(available, cookie, accept) == expected


def test_accept_language_is_bounded() -> None:
    assert len(parse_accept_language(",".join(["en"] * 10_000))) <= 20


@pytest.mark.parametrize(
    ("lang", "low", "high", "text"),
    [
        ("en", 300, 540, "5–9 minutes"),
        ("cs", 60, 150, "1–3 minuty"),
        ("cs", 300, 540, "5–9 minut"),
        ("de", 7200, 10800, "2–3 Stunden"),
        ("en", 10, 40, "under a minute"),
    ],
)
def test_wait_ranges_read_naturally(lang: str, low: float, high: float, text: str) -> None:
    translations = load_catalogs(LOCALE_DIR)[lang]
    assert Formatter(lang, translations.ngettext).wait_range(low, high) == text


def test_numbers_and_times_are_localised() -> None:
    cs = Formatter("cs", load_catalogs(LOCALE_DIR)["cs"].ngettext)
    assert cs.number(140000) == "140\xa0000"
    en = Formatter("en", load_catalogs(LOCALE_DIR)["en"].ngettext)
    assert en.number(140000) == "140,000"
    assert cs.clock(1_610_694_000_000_000, "Europe/Prague") == "8:00 CET"  # 15 Jan 2021 08:00
