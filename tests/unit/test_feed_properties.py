"""Whatever an incident or an alarm contains, and whatever the policy, no field outside the
policy's allow-list leaves: not on FEED (the projection, in its CloudEvent) and not in the
NGSI-LD Alert. Device ids, process values and names are planted in every free-text field; below
`full` none of them appears anywhere in what leaves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.feed.adapters.events import feed_event
from services.feed.domain.facts import AlarmFacts, IncidentFacts, Member, Position
from services.feed.domain.ngsi import alert_entity
from services.feed.domain.policy import (
    ALARM_FIELDS,
    INCIDENT_FIELDS,
    AllowList,
    Kind,
    Level,
    SharingPolicy,
)
from services.feed.domain.projection import project_alarm, project_incident
from tests.unit.feed_facts import PLACES

# Things a plant keeps to itself; each draw plants some of them in every free-text field.
DEVICES = st.sampled_from(["gd-fcc2-203", "fd-cdu1-112", "cam-vrds-07", "PT_101A"])
VALUES = st.sampled_from(["37.5 ppm", "62 %LEL", "418.25 Cel", "1870 kPa"])
NAMES = st.sampled_from(["Kim Min-jun", "Park Seo-yeon", "Lee Ji-ho", "박서연"])
SECRET_PARTS = st.tuples(DEVICES, VALUES, NAMES)
TIMES = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC))
LAT = st.floats(min_value=-80, max_value=80, allow_nan=False)
LON = st.floats(min_value=-179, max_value=179, allow_nan=False)
POSITIONS = st.builds(Position, LAT, LON)
ULIDS = st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=26, max_size=26)
# The tenant's own reference of a camera's picture (the original, faces unblurred).
TENANT_SNAPSHOT = "/v1/snapshots/"
ZONES = st.lists(st.sampled_from(["fcc-2", "cdu-1", "vrds", "tank-farm"]), max_size=3, unique=True)


def text_with(secrets: tuple[str, str, str]) -> st.SearchStrategy[str]:
    device, value, name = secrets
    return st.builds(
        lambda pre, post: f"{pre}{device} {value} {name}{post}", st.text(max_size=20), st.text(max_size=20)
    )


def snapshots_with(secrets: tuple[str, str, str]) -> st.SearchStrategy[str]:
    """A detection's snapshot reference: the video service's, one a gateway posted (a URL that
    names its camera), a planted text, or none."""
    device = secrets[0]
    return st.one_of(
        st.just(""),
        ULIDS.map(lambda ulid: f"{TENANT_SNAPSHOT}{ulid}"),
        st.just(f"http://frigate.plant.example:5000/api/events/{device}/snapshot.jpg"),
        text_with(secrets),
    )


def blurred_only(shared: dict[str, Any], tenant: str, site: str) -> bool:
    """Every picture reference that left is a blurred copy's subject of this tenant and site."""
    refs = [shared.get("snapshot"), *(shared.get("snapshots") or ())]
    prefix = f"feedsnap.{tenant}.{site}."
    return all(ref is None or (isinstance(ref, str) and ref.startswith(prefix)) for ref in refs)


@st.composite
def incidents(draw: st.DrawFn) -> tuple[IncidentFacts, tuple[str, str, str]]:
    secrets = draw(SECRET_PARTS)
    device, _value, name = secrets
    text = text_with(secrets)
    opened = draw(TIMES)
    member = Member(
        alarm_id=f"{device}--{draw(text)}",
        device=device,
        rule=draw(text),
        kind="gas.h2s",
        zone="fcc-2",
        alarm_class="safety",
        priority="emergency",
        active=draw(st.booleans()),
        snapshot=draw(snapshots_with(secrets)),
    )
    facts = IncidentFacts(
        event_id=draw(ULIDS),
        tenant="ulsan-refining",
        site="ulsan-refinery",
        incident_id=draw(ULIDS),
        change=draw(st.sampled_from(["opened", "joined", "acknowledged", "resolved", "commented"])),
        at=opened + timedelta(seconds=draw(st.integers(0, 86_400))),
        type=draw(st.sampled_from(["gas_release", "fire", "person_down", "intrusion", "alarm_flood"])),
        status=draw(st.sampled_from(["open", "acknowledged", "dispatched", "resolved", "closed"])),
        severity=draw(st.sampled_from(["Extreme", "Severe", "Moderate", "Minor", "Unknown"])),
        urgency="Immediate",
        certainty=draw(st.sampled_from(["Observed", "Likely", "Possible"])),
        confirmed=draw(st.booleans()),
        opened_at=opened,
        zones=tuple(draw(ZONES)),
        position=draw(st.none() | POSITIONS),
        title=draw(text),
        members=(member,),
        actions=tuple(draw(st.lists(text, max_size=2))),
        assignee=name,
        resolution_code=draw(st.sampled_from(["", "leak_isolated", "false_alarm"])),
        resolution_note=draw(text),
        counts={"total": draw(st.integers(0, 50))},
        what=draw(text),
        note=draw(text),
        actor=name,
        snapshots=tuple(draw(st.lists(snapshots_with(secrets), max_size=3))),
    )
    return facts, secrets


@st.composite
def alarms(draw: st.DrawFn) -> tuple[AlarmFacts, tuple[str, str, str]]:
    secrets = draw(SECRET_PARTS)
    device, _, name = secrets
    facts = AlarmFacts(
        event_id=draw(ULIDS),
        tenant="ulsan-refining",
        site="ulsan-refinery",
        alarm_id=f"{device}--h2s-high",
        device=device,
        rule="h2s-high",
        kind="gas.h2s",
        zone=draw(st.sampled_from(["fcc-2", "cdu-1", ""])),
        condition="high",
        alarm_class="safety",
        priority="high",
        state=draw(st.sampled_from(["UNACK", "ACKED", "RTNUN", "NORM"])),
        active=draw(st.booleans()),
        at=draw(TIMES),
        raised=draw(st.booleans()),
        position=draw(st.none() | POSITIONS),
        rationale=draw(text_with(secrets)),
        actor=name,
        snapshot=draw(snapshots_with(secrets)),
    )
    return facts, secrets


@st.composite
def policies(draw: st.DrawFn) -> SharingPolicy:
    def chosen(fields: frozenset[str]) -> tuple[str, ...] | None:
        return draw(st.none() | st.lists(st.sampled_from(sorted(fields)), unique=True).map(tuple))

    return SharingPolicy(
        level=draw(st.sampled_from(list(Level))),
        fields=AllowList(incident=chosen(INCIDENT_FIELDS), alarm=chosen(ALARM_FIELDS)),  # type: ignore[arg-type]
        grid_m=draw(st.none() | st.floats(min_value=1, max_value=5000)),
    )


def leaked(out: Any, secrets: tuple[str, ...]) -> list[str]:
    text = json.dumps(out, ensure_ascii=False)
    return [secret for secret in secrets if secret in text]


def allowed_keys(policy: SharingPolicy, kind: Kind) -> set[str]:
    chosen = policy.fields.of(kind)
    by_level = policy.allowed(kind)
    assert chosen is None or by_level <= chosen | {"id"}
    return set(by_level)


@settings(max_examples=300, deadline=None)
@given(incidents(), policies())
def test_no_incident_field_outside_the_allow_list_leaves_on_feed_or_ngsi(
    drawn: tuple[IncidentFacts, tuple[str, str, str]], policy: SharingPolicy
) -> None:
    facts, secrets = drawn
    shared = project_incident(facts, policy, PLACES)
    allowed = allowed_keys(policy, Kind.INCIDENT)
    if shared is None:
        assert not allowed
        return
    assert set(shared) <= allowed
    event = feed_event(
        Kind.INCIDENT,
        shared,
        tenant=facts.tenant,
        site=facts.site,
        source_id=facts.event_id,
        at=facts.at,
        policy_version=1,
    )
    entity = alert_entity(shared, tenant=facts.tenant, site=facts.site, issued=event.time)
    assert entity is not None
    # The NGSI-LD entity carries the shared record and what is derived from its fields only.
    assert entity["data"]["value"] == shared
    assert "location" not in entity or "location" in allowed
    assert "severity" not in entity or "severity" in allowed
    assert "validTo" not in entity or "resolved_at" in allowed
    if policy.level is not Level.FULL:
        assert not leaked(event.body, (*secrets, TENANT_SNAPSHOT))
        assert not leaked(entity, (*secrets, TENANT_SNAPSHOT))
        assert blurred_only(shared, facts.tenant, facts.site)
        if "location" in shared and facts.position is not None:
            assert shared["location"]["coordinates"] != [facts.position.lon, facts.position.lat] or (
                policy.grid_m is not None
            )


@settings(max_examples=300, deadline=None)
@given(alarms(), policies())
def test_no_alarm_field_outside_the_allow_list_leaves_on_feed(
    drawn: tuple[AlarmFacts, tuple[str, str, str]], policy: SharingPolicy
) -> None:
    facts, secrets = drawn
    shared = project_alarm(facts, policy, PLACES)
    allowed = allowed_keys(policy, Kind.ALARM)
    if shared is None:
        assert not allowed
        return
    assert set(shared) <= allowed
    event = feed_event(
        Kind.ALARM,
        shared,
        tenant=facts.tenant,
        site=facts.site,
        source_id=facts.event_id,
        at=facts.at,
        policy_version=1,
    )
    if policy.level is not Level.FULL:
        assert not leaked(event.body, (*secrets, TENANT_SNAPSHOT))
        assert blurred_only(shared, facts.tenant, facts.site)
