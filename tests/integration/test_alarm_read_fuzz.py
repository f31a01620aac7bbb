"""Fuzz the alarm read routes on a real hub serving them: no answer is a 5xx (but a documented
503), and every 4xx is problem+json. The whole-surface fuzz test (test_fuzz_http.py) reaches these
routes once the alarms service is registered; until then this one does, with rows in the tables
so valid requests find alarms, transitions and figures."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
import schemathesis

from services.common.auth.keys import create_key
from services.hub.bootstrap import Endpoints, Hub
from tests.conftest import REPO, hub_config, with_database
from tests.integration.alarm_read_hub import ALARM_READ_REGISTRY
from tests.integration.alarm_rows import PointRow, TransitionRow, insert_points, insert_transitions
from tests.integration.test_fuzz_http import (
    FUZZ,
    SCHEMA,
    FuzzedHub,
    _create_database,
    _drop_database,
    _HubThread,
    assert_answer_is_sound,
)

pytestmark = pytest.mark.integration

ALARM_ROUTES = SCHEMA.include(path_regex=r"^/v1/alarms")


async def _rows(hub: Hub) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    points = [
        PointRow("ulsan-refining", "ulsan-refinery", f"gd-fcc2-20{i}", "lel-high", p, state=s, active=True,
                 changed_at=now - timedelta(minutes=i))
        for i, (p, s) in enumerate([("emergency", "UNACK"), ("high", "ACKED"), ("low", "SHLVD")], start=1)
    ]  # fmt: skip
    await insert_points(hub.pool, points)
    await insert_transitions(
        hub.pool,
        [
            TransitionRow(p, now - timedelta(minutes=30), "NORM", "UNACK", True, activation=True)
            for p in points
        ],
    )


@pytest.fixture(scope="module")
def alarm_fuzz_hub(nats_server_url: str, postgres_admin_url: str) -> Iterator[FuzzedHub]:
    runner = _HubThread()
    name = f"t_{uuid.uuid4().hex[:16]}"
    runner.run(_create_database(postgres_admin_url, name))
    endpoints = Endpoints(nats_server_url, with_database(postgres_admin_url, name))
    hub = Hub(hub_config(), REPO, endpoints, service_registry=ALARM_READ_REGISTRY)
    runner.run(hub.start())
    try:
        runner.run(_rows(hub))
        keys = {"viewer": runner.run(create_key(hub.pool, tenant="ulsan-refining", role="viewer"))}
        with requests.Session() as session:
            yield FuzzedHub(hub.http_url, keys, session)
    finally:
        runner.run(hub.stop())
        runner.run(_drop_database(postgres_admin_url, name))
        runner.close()


@ALARM_ROUTES.parametrize()
@FUZZ
def test_every_alarm_read_operation_answers_soundly(
    case: schemathesis.Case, alarm_fuzz_hub: FuzzedHub
) -> None:
    if case.headers is None or "Authorization" not in case.headers:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {alarm_fuzz_hub.keys['viewer']}"}
    response = case.call(base_url=alarm_fuzz_hub.url, session=alarm_fuzz_hub.session, timeout=30)
    assert_answer_is_sound(
        response.status_code, response.headers, response.content, f"{case.method} {case.formatted_path}"
    )
