"""A faithful offline simulator of MusicBrainz ws/2 and the Cover Art Archive over a seeded synthetic world."""

from equigen.simulator.dump import write_dump, write_world_dump
from equigen.simulator.server import (
    LogEntry,
    SimConfig,
    SimulatorHandle,
    serve_forever,
    simulator_in_thread,
    start_simulator,
)
from equigen.simulator.world import BROKEN_KINDS, TRANSFORMS, ReleaseGroup, World, WorldConfig

__all__ = [
    "BROKEN_KINDS",
    "TRANSFORMS",
    "LogEntry",
    "ReleaseGroup",
    "SimConfig",
    "SimulatorHandle",
    "World",
    "WorldConfig",
    "serve_forever",
    "simulator_in_thread",
    "start_simulator",
    "write_dump",
    "write_world_dump",
]
