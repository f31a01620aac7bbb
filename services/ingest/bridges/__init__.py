"""Protocol bridges: readings that arrive over MQTT (and, to come, Sparkplug B, OPC UA ...)
become observations published exactly as `POST /v1/observations` publishes them."""
