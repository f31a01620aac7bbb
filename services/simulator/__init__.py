"""A simulated plant that feeds the hub through its public HTTP API, for the demo and load tests.

`plant` computes readings (pure, time as a parameter); `poster` sends them to the ingest API.
"""

from __future__ import annotations

from services.simulator.plant import PlantSimulator, ScenarioConfig, Upset
from services.simulator.poster import PosterStats, run_simulator

__all__ = ["PlantSimulator", "PosterStats", "ScenarioConfig", "Upset", "run_simulator"]
