"""Prometheus metrics of the protocol bridges, labelled by bridge (`mqtt`, ...)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RECEIVED = Counter("safetyhub_bridge_received", "Messages a bridge received from its peer", ["bridge"])
PUBLISHED = Counter(
    "safetyhub_bridge_published",
    "Observations a bridge published and JetStream acknowledged (before the peer was acknowledged)",
    ["bridge"],
)
DEADLETTERED = Counter(
    "safetyhub_bridge_deadlettered",
    "Messages a bridge could not decode or map, moved to DEADLETTER, by reason",
    ["bridge", "reason"],
)
REJECTED_ITEMS = Counter(
    "safetyhub_bridge_rejected_items",
    "Observations of a message refused by the registry checks (the message is dead-lettered)",
    ["bridge"],
)
COMMANDS = Counter(
    "safetyhub_bridge_commands", "Commands a bridge sent to its peers (Sparkplug rebirths)", ["bridge"]
)
OUT_OF_STEP = Counter(
    "safetyhub_bridge_out_of_step",
    "Sparkplug messages after a sequence gap, from a node not born, or naming an alias never born",
    ["bridge"],
)
CONNECTS = Counter("safetyhub_bridge_connects", "Connections a bridge made to its peer", ["bridge"])
CONNECTED = Gauge(
    "safetyhub_bridge_connected",
    "1 while a bridge is connected to its peer",
    ["bridge"],
    multiprocess_mode="livemax",
)
PEER_CONNECTED = Gauge(
    "safetyhub_bridge_peer_connected",
    "1 while a bridge is connected to this one of its peers (an OPC UA server)",
    ["bridge", "peer"],
    multiprocess_mode="livemax",
)
UNSUBSCRIBED = Gauge(
    "safetyhub_bridge_unsubscribed_nodes",
    "Configured nodes the peer refused to monitor on the current connection (BadNodeIdUnknown...)",
    ["bridge", "peer"],
    multiprocess_mode="livemax",
)
COMM_LOSSES = Counter(
    "safetyhub_bridge_comm_losses",
    "Outages of a peer reported as comm-loss observations of the devices behind it",
    ["bridge"],
)
