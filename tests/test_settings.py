import os
import subprocess
import sys

import pytest

from gateway.settings import DEV_SECRET, Settings, SettingsError
from helpers import REPO_ROOT

BASE = {"REDIS_URL": "redis://127.0.0.1:1/0"}
STRONG = "k" * 40


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "WAITROOM_SECRET is not set"),
        ({"WAITROOM_SECRET": "short-secret"}, "at least 32"),
        ({"WAITROOM_SECRET": DEV_SECRET}, "well-known default"),
        ({"WAITROOM_SECRET": f"{STRONG},changeme"}, "well-known default"),
        ({"WAITROOM_SECRET": STRONG, "REDIS_URL": ""}, "REDIS_URL"),
        ({"WAITROOM_SECRET": STRONG, "WAITROOM_TICK_SECONDS": "soon"}, "TICK"),
        ({"WAITROOM_SECRET": STRONG, "WAITROOM_COOKIE_SECURE": "maybe"}, "COOKIE_SECURE"),
    ],
)
def test_refuses_weak_or_missing_settings_outside_dev_mode(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(BASE | env)


def test_dev_mode_is_explicit_and_allows_the_public_secret() -> None:
    settings = Settings.from_env(BASE | {"WAITROOM_DEV": "1"})
    assert settings.dev_mode
    assert [str(s) for s in settings.secrets] == [DEV_SECRET]


def test_rotation_list_and_secrets_never_print() -> None:
    settings = Settings.from_env(BASE | {"WAITROOM_SECRET": f"{'a' * 32}, {'b' * 32}"})
    assert [str(s) for s in settings.secrets] == ["a" * 32, "b" * 32]
    assert "aaaa" not in repr(settings)


def test_gateway_process_will_not_start_without_a_secret() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAITROOM_")}
    env["REDIS_URL"] = "redis://127.0.0.1:1/0"
    proc = subprocess.run(
        [sys.executable, "-m", "uvicorn", "gateway.app:create_app", "--factory", "--port", "0"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode != 0
    assert "WAITROOM_SECRET is not set" in proc.stderr
