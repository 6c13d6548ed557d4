"""Facade over the Cython engine (ext/engine.pyx): the per-packet loop and the flow table."""

from __future__ import annotations

from dataclasses import dataclass

from agent._engine import (
    COUNTER_NAMES,
    DESC_SIZE,
    END_NAMES,
    EV_FLOW,
    EV_PAYLOAD,
    EV_TICK,
    INT_DNS,
    INT_FOLLOW_DOWN,
    INT_FOLLOW_UP,
    INT_QUIC,
    INT_TLS_PROBE,
    LAYER_NAMES,
    STATUS_NAMES,
    WHY_DNS,
    WHY_QUIC,
    WHY_TLS,
    Engine,
)

__all__ = [
    "COUNTER_NAMES",
    "DESC_SIZE",
    "END_NAMES",
    "EV_FLOW",
    "EV_PAYLOAD",
    "EV_TICK",
    "INT_DNS",
    "INT_FOLLOW_DOWN",
    "INT_FOLLOW_UP",
    "INT_QUIC",
    "INT_TLS_PROBE",
    "LAYER_NAMES",
    "STATUS_NAMES",
    "WHY_DNS",
    "WHY_QUIC",
    "WHY_TLS",
    "Engine",
    "FrameBatch",
]


@dataclass(frozen=True, slots=True)
class FrameBatch:
    """Frames of one capture buffer: `count` FrameDesc records in `descs` over `data`."""

    data: memoryview
    descs: bytearray | memoryview
    count: int
