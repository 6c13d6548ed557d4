from typing import Any

EV_TICK: int
EV_PAYLOAD: int
EV_FLOW: int
INT_DNS: int
INT_TLS_PROBE: int
INT_FOLLOW_UP: int
INT_FOLLOW_DOWN: int
INT_QUIC: int
WHY_DNS: int
WHY_TLS: int
WHY_QUIC: int
DESC_SIZE: int
END_NAMES: tuple[str, ...]
LAYER_NAMES: tuple[str, ...]
STATUS_NAMES: tuple[str, ...]
FRAG_COUNTER_NAMES: tuple[str, ...]
COUNTER_NAMES: tuple[str, ...]

class Engine:
    def __init__(
        self,
        *,
        max_flows: int = ...,
        tcp_timeout_s: float = ...,
        tcp_closed_timeout_s: float = ...,
        udp_timeout_s: float = ...,
        other_timeout_s: float = ...,
        active_timeout_s: float = ...,
        frag_timeout_s: float = ...,
        frag_max_datagrams: int = ...,
        key_vlan: bool = ...,
        key_tunnel: bool = ...,
        tcp_payload_cap: int = ...,
        tls: bool = ...,
        tls_probe_segments: int = ...,
        tls_payload_cap: int = ...,
        quic: bool = ...,
        quic_max_initials: int = ...,
        seed: int = ...,
    ) -> None: ...
    @property
    def now_ns(self) -> int: ...
    @property
    def active_flows(self) -> int: ...
    consumed: int
    def feed(
        self, data: Any, descs: Any, count: int, start: int = ..., stop_at_tick: bool = ...
    ) -> list[tuple[Any, ...]]: ...
    def tick(self, now_ns: int) -> list[tuple[Any, ...]]: ...
    def flush(self) -> list[tuple[Any, ...]]: ...
    def set_interest(self, handle: int, bits: int) -> None: ...
    def clear_interest(self, handle: int, bits: int) -> None: ...
    def counters(self) -> dict[str, int]: ...
