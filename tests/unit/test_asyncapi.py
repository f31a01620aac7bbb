"""asyncapi.yaml holds together as an AsyncAPI 3.0 document and says what the code does: its
addresses are the typed channels' subjects, its example headers fit their schemas, and its protobuf
excerpts have the fields and numbers of the generated contracts."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor
from jsonschema import Draft7Validator

from services.alarms.adapters.messages import FloodEdge, flood_id, transition_id
from services.alarms.channel import ALARM_CHANNEL, FLOOD_CHANNEL
from services.alarms.domain.model import AlarmState, PointId, Transition
from services.common.bus.channel import Channel
from services.common.contracts import (
    ALARM_FLOOD_TYPE,
    ALARM_TRANSITION_TYPE,
    OBSERVATION_BATCH_TYPE,
    AlarmTransition,
    Envelope,
    IncidentChange,
    ObservationBatch,
    incident_change_type,
)
from services.feed.adapters.events import feed_event
from services.feed.channel import FEED_CHANNEL
from services.feed.domain.policy import Kind, SharingPolicy
from services.feed.domain.projection import project_alarm, project_counts, project_incident
from services.incidents.channel import INCIDENT_CHANNEL
from services.incidents.domain.fusion import ChangeKind
from services.incidents.domain.timeline import CHANGE_OF_ACTION
from services.ingest.channel import OBSERVATION_CHANNEL
from tests.conftest import REPO
from tests.unit.feed_facts import PLACES, alarm, incident

CHANNELS: dict[str, Channel[Any]] = {
    "observations": OBSERVATION_CHANNEL,
    "alarmTransitions": ALARM_CHANNEL,
    "alarmFloods": FLOOD_CHANNEL,
    "incidentChanges": INCIDENT_CHANNEL,
    "feedEvents": FEED_CHANNEL,
}
# The headers schema of each message, and the CloudEvents type the code sends with it.
TYPES = {
    "ObservationHeaders": OBSERVATION_BATCH_TYPE,
    "AlarmTransitionHeaders": ALARM_TRANSITION_TYPE,
    "AlarmFloodHeaders": ALARM_FLOOD_TYPE,
}
PROTOBUF = "application/vnd.google.protobuf;version=3"


@functools.cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "asyncapi.yaml").read_text(encoding="utf-8"))
    return loaded


def resolve(ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref}: only references within the document are used"
    node: Any = document()
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve (at {part!r})"
        node = node[part]
    return node


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_it_is_an_asyncapi_3_document_with_its_required_parts() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    declared_tags = {tag["name"] for tag in doc["info"]["tags"]}
    for section in ("channels", "operations"):
        for name, item in doc[section].items():
            assert {tag["name"] for tag in item.get("tags", [])} <= declared_tags, name


def test_every_reference_resolves() -> None:
    found = list(refs(document()))
    assert found
    for ref in found:
        resolve(ref)


@pytest.mark.parametrize("name", sorted(CHANNELS))
def test_a_channel_address_is_the_subject_its_typed_channel_builds(name: str) -> None:
    channel = CHANNELS[name]
    address = document()["channels"][name]["address"]

    assert address == channel.subject(*(f"{{{token}}}" for token in channel.tokens))


def test_every_address_parameter_is_described_and_only_those() -> None:
    for name, channel in document()["channels"].items():
        in_address = set(re.findall(r"\{(\w+)\}", channel["address"]))
        assert in_address == set(channel.get("parameters", {})), name


def test_operations_name_their_channels_messages() -> None:
    for name, operation in document()["operations"].items():
        assert operation["action"] in {"send", "receive"}, name
        channel_ref = operation["channel"]["$ref"]
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name


def test_message_examples_fit_their_header_schemas_and_the_codes_types() -> None:
    messages = document()["components"]["messages"]
    checked = set()
    for message in messages.values():
        schema_ref = message["headers"]["$ref"]
        schema = resolve(schema_ref)
        name = schema_ref.rsplit("/", 1)[1]
        if name in TYPES:
            assert schema["properties"]["ce-type"]["const"] == TYPES[name]
        for example in message.get("examples", []):
            errors = list(Draft7Validator(schema).iter_errors(example["headers"]))
            assert not errors, f"{message['name']} {example['name']}: {errors[0].message}"
            checked.add(name)
    assert set(TYPES) <= checked


# ---------------------------------------------------------------- protobuf excerpts

_OPEN = re.compile(r"^\s*(message|enum|oneof)\s+(\w+)\s*\{")
_FIELD = re.compile(r"^\s*(?:optional\s+|repeated\s+)?(?:map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;")
_VALUE = re.compile(r"^\s*(\w+)\s*=\s*(\d+)\s*;")


def parse_excerpt(text: str) -> dict[str, dict[str, int]]:
    """Each message's fields and each enum's values with their numbers, as the excerpt says."""
    found: dict[str, dict[str, int]] = {}
    stack: list[tuple[str, str]] = []  # (kind, name) of the open blocks
    for full_line in text.splitlines():
        line = full_line.split("//", 1)[0]
        opened = _OPEN.match(line)
        if opened:
            kind, name = opened.groups()
            if kind != "oneof":
                found[name] = {}
            stack.append((kind, name))
            continue
        if line.strip() == "}":
            stack.pop()
            continue
        owner = next((name for kind, name in reversed(stack) if kind != "oneof"), None)
        if owner is None:
            continue
        kind = next(kind for kind, name in reversed(stack) if name == owner)
        match = (_VALUE if kind == "enum" else _FIELD).match(line)
        if match:
            found[owner][match.group(1)] = int(match.group(2))
    return found


def described(files: list[FileDescriptor]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for file in files:
        for message in file.message_types_by_name.values():
            out[message.name] = _fields(message)
        for enum in file.enum_types_by_name.values():
            out[enum.name] = _values(enum)
    return out


def _fields(message: Descriptor) -> dict[str, int]:
    return {field.name: field.number for field in message.fields}


def _values(enum: EnumDescriptor) -> dict[str, int]:
    return {value.name: value.number for value in enum.values}


@pytest.mark.parametrize(
    ("message", "files"),
    [
        ("ObservationBatch", [ObservationBatch.DESCRIPTOR.file, Envelope.DESCRIPTOR.file]),
        ("AlarmTransition", [AlarmTransition.DESCRIPTOR.file, Envelope.DESCRIPTOR.file]),
        ("AlarmFlood", [AlarmTransition.DESCRIPTOR.file, Envelope.DESCRIPTOR.file]),
        ("IncidentChange", [IncidentChange.DESCRIPTOR.file, Envelope.DESCRIPTOR.file]),
    ],
)
def test_a_payload_excerpt_has_the_fields_and_numbers_of_the_contract(
    message: str, files: list[FileDescriptor]
) -> None:
    payload = document()["components"]["messages"][message]["payload"]
    if "$ref" in payload:
        payload = resolve(payload["$ref"])
    assert payload["schemaFormat"] == PROTOBUF

    excerpt = parse_excerpt(payload["schema"])

    assert message in excerpt
    assert excerpt == described(files), "asyncapi.yaml's excerpt differs from proto/: copy the .proto again"


def test_the_alarm_examples_show_the_ids_the_code_derives() -> None:
    # The examples' summaries describe these two events; their ids must be what the engine sends.
    raised = Transition(
        point=PointId("ulsan-refining", "ulsan-refinery", "gd-fcc2-203", "h2s-high-high"),
        old=AlarmState.NORM,
        new=AlarmState.UNACK,
        at=datetime(2026, 11, 22, 0, 15, 3, tzinfo=UTC),
        observation_ids=("01M809PBX0VKEPBGTYJ8AHME2Z",),
        active=True,
    )
    begins = datetime(2026, 11, 22, 0, 21, 40, tzinfo=UTC)
    flood = FloodEdge(
        "ulsan-refining", "ulsan-refinery", began=True, at=begins, count=11, since=begins, activations=11
    )
    messages = document()["components"]["messages"]

    assert messages["AlarmTransition"]["examples"][0]["headers"]["Nats-Msg-Id"] == transition_id(raised)
    assert messages["AlarmFlood"]["examples"][0]["headers"]["Nats-Msg-Id"] == flood_id(flood)


def test_every_incident_change_type_the_code_sends_fits_the_header_schema() -> None:
    schema = resolve("#/components/schemas/IncidentChangeHeaders")
    pattern = re.compile(schema["properties"]["ce-type"]["pattern"])
    changes = {str(kind) for kind in ChangeKind} | set(CHANGE_OF_ACTION.values())
    for change in changes:
        assert pattern.match(incident_change_type(change)), change
    assert not pattern.match("org.safetyhub.incident.exploded.v1")


def test_feed_events_the_code_builds_and_the_examples_fit_the_payload_schema() -> None:
    schema = resolve("#/components/schemas/FeedEventPayload")
    headers = resolve("#/components/schemas/FeedEventHeaders")
    validator = Draft7Validator(schema)
    built = []
    for level in ("redacted", "full"):
        policy = SharingPolicy(level=level)  # type: ignore[arg-type]
        facts, alarm_facts = incident(), alarm()
        for kind, shared, at in (
            (Kind.INCIDENT, project_incident(facts, policy, PLACES), facts.at),
            (Kind.ALARM, project_alarm(alarm_facts, policy, PLACES), alarm_facts.at),
            (Kind.KPI, project_counts("fcc-2", facts.at, 1, 2, policy), facts.at),
        ):
            assert shared is not None
            built.append(
                feed_event(
                    kind, shared, tenant=facts.tenant, site=facts.site, source_id="x", at=at, policy_version=2
                )
            )
    for out in built:
        errors = list(validator.iter_errors(out.body))
        assert not errors, f"{out.event.type}: {errors[0].message}"
        assert not list(Draft7Validator(headers).iter_errors(out.message.headers))
    for example in document()["components"]["messages"]["FeedEvent"]["examples"]:
        assert not list(validator.iter_errors(example["payload"])), example["name"]
