"""The alarm engine's adapters: its messages on the bus."""
