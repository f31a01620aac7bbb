"""The ALARMS stream and its channels: the alarm engine publishes there, incidents and others consume.

Two subject families in one stream, each one message type, so a typed subscriber never has to
guess what it decodes:
- `alarm.<tenant>.<site>.<alarm id>`: an `AlarmTransition`, each change of one alarm's state;
- `alarmflood.<tenant>.<site>`: an `AlarmFlood`, a flood beginning or ending at a site.
Tenant and site are the first tokens of both, so a consumer filters one site
(`alarm.ulsan-refining.ulsan-refinery.>`) or partitions on them, and the alarms of one point keep
one subject, hence their order.
"""

from __future__ import annotations

from services.common.bus.channel import Channel
from services.common.bus.streams import StreamDef
from services.common.contracts import AlarmFlood, AlarmTransition
from services.common.settings import StreamConfig

# Alarms are the record an incident review goes back to: kept longer than raw observations by
# default (the PostgreSQL tables stay the system of record; the stream is for consumers to catch up).
ALARMS_DEFAULT_LIMITS = StreamConfig(max_age_hours=24.0 * 7)

ALARMS = StreamDef(
    "ALARMS",
    ("alarm.>", "alarmflood.>"),
    "Alarm state transitions per point and flood state per site",
    config_key="alarms",
    default_limits=ALARMS_DEFAULT_LIMITS,
)

ALARM_CHANNEL: Channel[AlarmTransition] = Channel(
    ALARMS, "alarm", ("tenant", "site", "alarm"), AlarmTransition
)

FLOOD_CHANNEL: Channel[AlarmFlood] = Channel(ALARMS, "alarmflood", ("tenant", "site"), AlarmFlood)
