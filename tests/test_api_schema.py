"""Schemathesis against the gateway's own OpenAPI documents, on a real gateway (uvicorn, two
workers) with a real Redis: whatever a client sends that the documents allow, or almost allow,
the answer is never a server error."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from gateway.ops.auth import hash_password
from helpers import Stack, gateway_stack

pytestmark = pytest.mark.slow
ROOMS = """
[rooms.vaccination]
paths = ["/book"]
rate_per_minute = 30

[rooms.quiet]
paths = ["/quiet"]
rate_per_minute = 0
"""
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


PASSWORD = "schema-fuzzing-0800"


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"WAITROOM_OPS_USERS": f"fuzz:{hash_password(PASSWORD)}"}
    with gateway_stack(
        redis_url, tmp_path_factory.mktemp("schema"), ROOMS, workers=2, gateway_env=env
    ) as s:
        yield s


def fuzz(
    schema: schemathesis.BaseSchema, headers: dict[str, str] | None = None
) -> tuple[list[str], Counter[int]]:
    """Every operation of `schema`, with valid and invalid inputs: what went wrong, if any,
    and the status codes seen.

    Driven by hand rather than through schemathesis' pytest plugin, which does not run under
    pytest 9 (it reads a private attribute pytest removed)."""
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ
            @given(operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                if headers:  # the session and its CSRF token, whatever was generated
                    case.headers = {**(case.headers or {}), **headers}
                response = case.call()
                statuses[response.status_code] += 1
                try:
                    case.validate_response(response, checks=[not_a_server_error])
                except AssertionError as exc:  # schemathesis' failures are assertion errors
                    failures.append(f"{case.operation.label}: {exc}"[:2000])

            try:
                run()
            except Unsatisfiable:
                # Nothing the document forbids can be sent here (a room that is not in the
                # list is still a string): no invalid input to try.
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert labels, "the document lists no operations"
    assert sum(statuses.values()) >= 20 * len(labels), (labels, statuses)
    return failures, statuses


def test_the_visitor_api_never_answers_with_a_server_error(stack: Stack) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.url}/_waitroom/openapi.json")
    failures, statuses = fuzz(schema)
    assert not failures, "\n\n".join(failures[:5])
    assert statuses[200] > 0, statuses  # real rooms were reached, not only 4xx


def test_the_admin_api_never_answers_with_a_server_error(stack: Stack) -> None:
    # Logged in, with the session's CSRF token on every request: the fuzzing reaches the
    # validation of every control, not just the login check.
    with httpx.Client(base_url=stack.url) as c:
        r = c.post("/_waitroom/ops/login", json={"user": "fuzz", "password": PASSWORD})
        assert r.status_code == 200, r.text
        headers = {
            "X-CSRF-Token": r.json()["csrf"],
            "Cookie": "; ".join(f"{k}={v}" for k, v in c.cookies.items()),
        }
        schema = schemathesis.openapi.from_url(
            f"{stack.url}/_waitroom/ops/openapi.json", headers=headers
        )
    failures, statuses = fuzz(schema, headers)
    assert not failures, "\n\n".join(failures[:5])
    # Past the login and the CSRF check, into the controls' own validation.
    assert statuses[200] > 0 and statuses[400] > 0, statuses
    # The rooms are still there and still answer: nothing the fuzzing sent broke them.
    with httpx.Client(base_url=stack.url) as visitor:
        assert visitor.post("/_waitroom/api/rooms/quiet/join").status_code == 200
