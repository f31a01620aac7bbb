"""`safetyhub demo` as a newcomer runs it: the commands it prints work when pasted, the
scripted gas release raises its alarms, and only those, in the first minute (the camera's smoke
seen in the pictures of the demo's own MJPEG camera, through the video service), and opens an
incident that the 2oo3 group's confirmation raises, the camera's alarm joins, and the simulated
responder acknowledges, takes on scene and resolves once the release is over."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import ConsumerConfig, DeliverPolicy

from services.alarms.adapters.decode import read_transition
from services.alarms.channel import ALARM_CHANNEL
from services.common.bus.connection import connect_bus
from services.common.redact import redact
from services.hub.demo import RESPONDER
from services.simulator import alarm_scenarios
from tests.conftest import DEMO_SITES, REPO, eventually

pytestmark = pytest.mark.e2e


TENANT, SITE = "ulsan-refining", alarm_scenarios.SITE
GROUP_ALARM = "fcc2-lel-2oo3--vote"
# What an operator of the refinery sees once the scripted release in FCC 2 has run a minute: the
# two rising detectors' high alarms, the silent one's communication loss (of both its gases), the
# camera's smoke and the 2oo3 group's confirmed alarm. Nothing else: the plant is otherwise at rest.
RELEASE_ALARMS = {
    *(f"{device}--lel-high" for device, _ in alarm_scenarios.RELEASE_RISING),
    f"{alarm_scenarios.RELEASE_SILENT}--gas-lel-stale",
    f"{alarm_scenarios.RELEASE_SILENT}--gas-h2s-stale",
    f"{alarm_scenarios.RELEASE_CAMERA}--camera-smoke",
    GROUP_ALARM,
}


async def run_pasted(command: str) -> tuple[int, str]:
    """Runs a printed curl command as a shell would, and returns the HTTP status and the body."""
    argv = shlex.split(command)
    assert argv[0] == "curl"
    proc = await asyncio.create_subprocess_exec(
        *argv, "-w", "\n%{http_code}", stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, err.decode()
    body, _, status = out.decode().rpartition("\n")
    return int(status), body


def start_demo(workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    config = workdir / "hub.yaml"
    config.write_text(f"sites: ['{DEMO_SITES}']\n")
    command = [sys.executable, "-m", "services.hub.cli", "demo", "--plain", "--http-port", "0"]
    command += ["--data-dir", str(workdir / "data"), "--config", str(config)]
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


# The release lasts 150 s from 20 s after start; its alarms return over the following minute and
# the responder waits 10 s more before resolving.
@pytest.mark.timeout(600)
async def test_the_printed_commands_work_and_the_gas_release_raises_its_alarms(workdir: Path) -> None:
    log = workdir / "demo.log"
    proc = start_demo(workdir, log)
    try:

        async def ready() -> dict[str, Any] | None:
            assert proc.poll() is None, f"demo exited with {proc.returncode}: {log.read_text()[-2000:]}"
            for line in log.read_text().splitlines():
                if '"demo_ready"' in line:
                    event: dict[str, Any] = json.loads(line)
                    return event
            return None

        info = await eventually(ready, timeout=120, what="the demo's ready line")
        assert info["gateway_key_(ulsan-refining)"].startswith("shk_")
        assert info["viewer_key_(ulsan-refining)"].startswith("shk_")

        status, body = await run_pasted(info["post"])
        assert status == 202, body
        answer = json.loads(body)
        assert len(answer["accepted"]) == 1 and answer["rejected"] == []

        status, body = await run_pasted(info["read"])
        assert status == 200, body
        status, body = await run_pasted(f"curl -sS {shlex.quote(info['api_docs'])}")
        assert status == 200 and "/openapi.json" in body

        await the_gas_release_raises_its_alarms(info)
        await the_camera_saw_it(info)
        incident_id = await the_responder_resolves_its_incident(info)
        await the_control_room_heard_of_it(log, incident_id)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


async def the_gas_release_raises_its_alarms(info: dict[str, Any]) -> None:
    """The scripted release (from 20 s) in the active alarms the printed command reads, and the
    group's alarm on ALARMS."""

    async def active() -> dict[str, dict[str, Any]] | None:
        status, body = await run_pasted(info["alarms"])
        assert status == 200, body
        items = {item["id"]: item for item in json.loads(body)["items"]}
        return items if set(items) >= RELEASE_ALARMS else None

    alarms = await eventually(active, timeout=150, what="the gas release's alarms")
    assert set(alarms) == RELEASE_ALARMS
    group = alarms[GROUP_ALARM]
    assert "confirmed" in group["flags"] and group["priority"] == "emergency"
    # The release stays below 40 %LEL: high alarms, no high-high.
    assert {alarms[a]["rule"] for a in alarms if a.endswith("--lel-high")} == {"lel-high"}

    # The printed URL hides the hub's NATS password; its tools read runtime.json (0600) instead.
    runtime = json.loads((Path(info["data_dir"]) / "runtime.json").read_text())
    assert info["nats"] == redact(runtime["nats_url"]) and ":***@" in info["nats"]
    nc = await connect_bus(runtime["nats_url"], name="demo-test")
    try:
        sub = await nc.jetstream().subscribe(
            ALARM_CHANNEL.subject(TENANT, SITE, GROUP_ALARM),
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        transition, _ = read_transition(await sub.next_msg(timeout=10))
    finally:
        await nc.close()
    assert transition.new.value == "UNACK"


async def the_camera_saw_it(info: dict[str, Any]) -> None:
    """The camera's smoke is a detection of its pictures: in its newest observations with a
    snapshot, whose blurred copy the viewer key reads."""
    viewer = info["viewer_key_(ulsan-refining)"]
    assert info["camera"].startswith("http://127.0.0.1:")
    latest = f"{info['http_api']}/v1/devices/{alarm_scenarios.RELEASE_CAMERA}/latest?site={SITE}"
    status, body = await run_pasted(f"curl -sS -H 'Authorization: Bearer {viewer}' '{latest}'")
    assert status == 200, body
    (smoke,) = [item for item in json.loads(body)["items"] if item["kind"] == "video.smoke"]
    assert smoke["attributes"]["camera"] == alarm_scenarios.RELEASE_CAMERA and smoke["confidence"] >= 0.5
    snapshot = f"{info['http_api']}{smoke['snapshot']}/blurred"
    status, _ = await run_pasted(f"curl -sS -o /dev/null -H 'Authorization: Bearer {viewer}' '{snapshot}'")
    assert status == 200


async def the_responder_resolves_its_incident(info: dict[str, Any]) -> str:
    """The release's incident: opened by fusion, raised when the camera confirmed it, then
    acknowledged, dispatched and resolved by the simulated responder through the API."""
    viewer = info["viewer_key_(ulsan-refining)"]
    listing = f"{info['http_api']}/v1/incidents?type=gas_release&site={SITE}"

    async def incident() -> dict[str, Any] | None:
        status, body = await run_pasted(f"curl -sS -H 'Authorization: Bearer {viewer}' '{listing}'")
        assert status == 200, body
        items = json.loads(body)["items"]
        return items[0] if items else None

    opened = await eventually(incident, timeout=60, what="the gas release's incident")
    detail_url = f"{info['http_api']}/v1/incidents/{opened['id']}"

    async def resolved() -> dict[str, Any] | None:
        status, body = await run_pasted(
            f"curl -sS -H 'Authorization: Bearer {viewer}' -H 'Accept-Language: en' '{detail_url}'"
        )
        assert status == 200, body
        detail: dict[str, Any] = json.loads(body)
        return detail if detail["incident"]["status"] == "resolved" else None

    detail = await eventually(resolved, timeout=360, what="the responder resolving the incident")
    assert detail["incident"]["confirmed"] and detail["incident"]["severity"] == "Extreme"
    assert detail["incident"]["resolution"]["code"] == "leak_isolated"
    assert detail["incident"]["assignee"] == RESPONDER
    changes = [(entry["actor"], entry["change"]) for entry in detail["timeline"]]
    assert changes[0] == ("system", "opened")
    assert ("system", "raised") in changes  # the 2oo3 group confirmed the gas
    # The camera saw the vapour after the detectors alarmed: its alarm joined the release's
    # incident rather than opening a fire of its own.
    members = {member["alarmId"] for member in detail["members"]}
    assert f"{alarm_scenarios.RELEASE_CAMERA}--camera-smoke" in members
    fires = f"{info['http_api']}/v1/incidents?type=fire&site={SITE}"
    status, body = await run_pasted(f"curl -sS -H 'Authorization: Bearer {viewer}' '{fires}'")
    assert status == 200 and json.loads(body)["items"] == [], body
    by_responder = [change for actor, change in changes if actor == RESPONDER]
    assert by_responder == ["acknowledged", "dispatched", "resolved"]
    return str(opened["id"])


async def the_control_room_heard_of_it(log: Path, incident_id: str) -> None:
    """The demo's own receiver got the incident's opening, was paged again before the responder
    acknowledged (the demo's escalation policy), and heard of the resolution; every delivery
    verified with its endpoint's secret."""

    async def heard() -> list[str] | None:
        types = []
        for line in (await asyncio.to_thread(log.read_text)).splitlines():
            if '"control_room_' in line:
                event = json.loads(line)
                assert event["event"] != "control_room_unverified", event
                if event["event"] == "control_room_received" and event.get("incident_id") == incident_id:
                    types.append(event["type"].split(".")[3])
        return types if "resolved" in types else None

    types = await eventually(heard, timeout=60, what="the control room hearing of the resolution")
    assert types[0] == "opened" and "escalated" in types
    assert types.index("escalated") < types.index("acknowledged") < types.index("resolved")
