import pytest

from gateway.visitors import safe_next
from queue_core.rooms import ConfigError, RoomConfig, load_rooms, parse_rooms

ROOM = RoomConfig("vaccination", ("/book", "/api/slots"))


def test_rooms_file_with_environment_override(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rooms.toml"
    path.write_text(
        '[rooms.a]\npaths = ["/a"]\nrate_per_minute = 10\n[rooms.b-2]\npaths = ["/b"]\n'
    )
    rooms = load_rooms(
        path, {"WAITROOM_ROOM_A_RATE_PER_MINUTE": "2.5", "WAITROOM_ROOM_B_2_PATHS": "/x,/y"}
    )
    assert rooms["a"].rate_per_minute == 2.5
    assert rooms["b-2"].paths == ("/x", "/y")
    assert rooms["b-2"].rate_per_minute == 60.0


@pytest.mark.parametrize(
    ("data", "env", "message"),
    [
        ({}, {}, "no rooms"),
        ({"rooms": {"a": {"paths": []}}}, {}, "paths"),
        ({"rooms": {"a": {"paths": ["book"]}}}, {}, "must start"),
        ({"rooms": {"a": {"paths": ["//evil"]}}}, {}, "must start"),
        ({"rooms": {"A B": {"paths": ["/a"]}}}, {}, "room name"),
        ({"rooms": {"a": {"paths": ["/a"], "rate_per_minute": -1}}}, {}, "rate_per_minute"),
        ({"rooms": {"a": {"paths": ["/a"], "grace_seconds": 0}}}, {}, "grace_seconds"),
        ({"rooms": {"a": {"paths": ["/a"], "colour": "red"}}}, {}, "unknown setting"),
        (
            {"rooms": {"a": {"paths": ["/a"]}}},
            {"WAITROOM_ROOM_A_RATE_PER_MINUTE": "fast"},
            "invalid",
        ),
        (
            {"rooms": {"a": {"paths": ["/a"]}}},
            {"WAITROOM_ROOM_A_RATE_PER_MINUTE": "nan"},
            "positive",
        ),
    ],
)
def test_bad_config_is_a_clear_error(data: dict, env: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=message):
        parse_rooms(data, env)


def test_unreadable_file_is_a_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="cannot read"):
        load_rooms(tmp_path / "missing.toml", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("[rooms.a\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_rooms(bad, {})


@pytest.mark.parametrize(
    ("path", "protected"),
    [
        ("/book", True),
        ("/book/", True),
        ("/book/confirm", True),
        ("/booking", False),
        ("/api/slots/3", True),
        ("/", False),
        ("/BOOK", False),
    ],
)
def test_protects(path: str, protected: bool) -> None:
    assert ROOM.protects(path) is protected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "/book"),
        ("/book/confirm?centre=2", "/book/confirm?centre=2"),
        ("/api/slots", "/api/slots"),
        ("https://evil.example/book", "/book"),
        ("//evil.example/book", "/book"),
        ("/\\evil.example", "/book"),
        ("\\\\evil.example", "/book"),
        ("/book/../admin", "/book"),
        ("/admin", "/book"),
        ("javascript:alert(1)", "/book"),
        ("/book\r\nSet-Cookie: x=1", "/book"),
        ("/book/" + "a" * 3000, "/book"),
    ],
)
def test_safe_next_never_leaves_the_room(raw: str | None, expected: str) -> None:
    assert safe_next(ROOM, raw) == expected
