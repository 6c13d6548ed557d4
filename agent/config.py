"""Configuration: TOML into frozen dataclasses, with every problem reported at once.

Defaults live in the dataclasses. Each field may carry bounds in its metadata;
`load_config` checks types, bounds and unknown keys across the whole file and
raises one ConfigError listing every problem, so `tapsense check-config` can
print them all.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_origin, get_type_hints


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _num(default: float, lo: float, hi: float) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi})


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """[sensor]: how this sensor names itself in batches."""

    id: str = ""  # empty: the host name


@dataclass(frozen=True, slots=True)
class ShipConfig:
    """[ship]: batches to a collector, the spool that holds them until acknowledged."""

    url: str = ""  # tcp://HOST:PORT or tls://HOST:PORT; empty: no shipping
    ca: str = ""
    cert: str = ""
    key: str = ""
    window_s: float = _num(10.0, 1, 3600)
    records: bool = True
    compression: str = field(default="zlib", metadata={"choices": ("zlib", "none")})
    spool_dir: str = "/var/lib/tapsense/spool"
    spool_max_mb: float = _num(256.0, 1, 1 << 20)
    fsync: str = field(default="batch", metadata={"choices": ("batch", "never")})
    timeout_s: float = _num(60.0, 0, 86400)
    backoff_max_s: float = _num(30.0, 1, 3600)


@dataclass(frozen=True, slots=True)
class CollectConfig:
    """[collect]: the collector's listening socket, database and limits."""

    listen: str = "127.0.0.1:7443"
    db: str = "tapsense.db"
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""  # with a CA, sensors must present a certificate it signed (mutual TLS)
    max_frame_mb: float = _num(16.0, 0.01, 1024)
    hello_timeout_s: float = _num(10.0, 0.1, 3600)
    frame_timeout_s: float = _num(30.0, 0.1, 3600)
    idle_timeout_s: float = _num(600.0, 1, 86400)


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """[capture]: interfaces, workers and the TPACKET_V3 ring of the daemon."""

    interfaces: tuple[str, ...] = ()
    workers: int = _num(1, 1, 64)
    block_size_kb: int = field(default=1024, metadata={"min": 4, "max": 65536, "multiple": 4})
    block_count: int = _num(64, 2, 65536)
    block_timeout_ms: int = _num(100, 1, 60000)
    promisc: bool = True
    bpf: str = ""
    fanout_group: int = _num(0, 0, 0xFFFF)  # 0: one derived from the process id


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """[daemon]: the user it runs as, its own events file, how long a stop may take."""

    user: str = "nobody"  # a daemon started as root becomes this user once its sockets are open
    events: str = ""  # records as JSON Lines to this path too ("" none, "-" stdout)
    stop_timeout_s: float = _num(20.0, 1, 600)


@dataclass(frozen=True, slots=True)
class FlowConfig:
    """[flow]: the flow table's size, timeouts and what keys a flow."""

    max_flows: int = _num(131072, 1, 1 << 26)
    tcp_timeout_s: float = _num(300.0, 1, 86400)
    tcp_closed_timeout_s: float = _num(5.0, 0, 3600)
    udp_timeout_s: float = _num(60.0, 1, 86400)
    other_timeout_s: float = _num(60.0, 1, 86400)
    active_timeout_s: float = _num(120.0, 0, 86400)
    key_vlan: bool = True
    key_tunnel: bool = True


@dataclass(frozen=True, slots=True)
class FragmentConfig:
    """[fragments]: IP reassembly's bounds."""

    max_datagrams: int = _num(256, 0, 65536)
    timeout_s: float = _num(30.0, 1, 600)


@dataclass(frozen=True, slots=True)
class DnsConfig:
    """[dns]: how long a query waits for its response, and the DNS trackers' caps."""

    timeout_s: float = _num(10.0, 0.1, 3600)
    max_pending: int = _num(65536, 1, 1 << 24)
    max_tcp_streams: int = _num(4096, 1, 1 << 20)
    tcp_payload_cap: int = _num(262144, 512, 1 << 26)


@dataclass(frozen=True, slots=True)
class AttributionConfig:
    """[attribution]: naming flows' services, from the services files and DNS answers."""

    enabled: bool = True
    services_files: tuple[str, ...] = ()
    dns_cache_s: float = _num(3600.0, 1, 7 * 86400)
    dns_cache_entries: int = _num(262144, 16, 1 << 24)


@dataclass(frozen=True, slots=True)
class IntelConfig:
    """[intel]: indicator lists to match records against."""

    files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PrivacyConfig:
    """[privacy]: what becomes of client addresses before records leave."""

    clients: str = field(default="keep", metadata={"choices": ("keep", "cryptopan", "truncate")})
    key_file: str = "/var/lib/tapsense/cryptopan.key"
    truncate_v4: int = _num(24, 0, 32)
    truncate_v6: int = _num(48, 0, 128)
    local_nets: tuple[str, ...] = field(default=(), metadata={"cidrs": True})


@dataclass(frozen=True, slots=True)
class RollupConfig:
    """[rollups]: what the per-window rollups count."""

    clients: bool = False


@dataclass(frozen=True, slots=True)
class LogConfig:
    """[log]: level of the JSON log and how often it carries stats."""

    level: str = field(default="info", metadata={"choices": ("debug", "info", "warning", "error")})
    stats_interval_s: float = _num(60.0, 1, 86400)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration: one frozen section per TOML table."""

    sensor: SensorConfig = field(default_factory=SensorConfig)
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    fragments: FragmentConfig = field(default_factory=FragmentConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    ship: ShipConfig = field(default_factory=ShipConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    intel: IntelConfig = field(default_factory=IntelConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    rollups: RollupConfig = field(default_factory=RollupConfig)
    log: LogConfig = field(default_factory=LogConfig)


def _check_section(cls: type, raw: Any, prefix: str, problems: list[str]) -> dict[str, Any]:
    """Returns the valid values of one section; appends a line per problem."""
    if not isinstance(raw, dict):
        problems.append(f"{prefix}: must be a table")
        return {}
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key in raw:
        if key not in known:
            problems.append(f"{prefix}.{key}: unknown option")
    for name, f in known.items():
        if name not in raw:
            continue
        value = raw[name]
        want = hints[name]
        if isinstance(want, type) and hasattr(want, "__dataclass_fields__"):
            values[name] = want(**_check_section(want, value, f"{prefix}.{name}", problems))
            continue
        if get_origin(want) is tuple:  # a list of strings
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                problems.append(f"{prefix}.{name}: expected a list of strings, got {value!r}")
                continue
            bad = [v for v in value if f.metadata.get("cidrs") and not _is_network(v)]
            if bad:
                problems.append(f"{prefix}.{name}: not a network (CIDR): {', '.join(bad)}")
                continue
            values[name] = tuple(value)
            continue
        ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
        if want is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            problems.append(f"{prefix}.{name}: expected {want.__name__}, got {value!r}")
            continue
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if isinstance(value, float) and value != value:  # NaN passes every comparison
            problems.append(f"{prefix}.{name}: not a number")
            continue
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            problems.append(f"{prefix}.{name}: {value!r} is outside [{lo}, {hi}]")
            continue
        multiple = f.metadata.get("multiple")
        if multiple and value % multiple:
            problems.append(f"{prefix}.{name}: {value!r} is not a multiple of {multiple}")
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            problems.append(f"{prefix}.{name}: {value!r} is not one of {', '.join(choices)}")
            continue
        values[name] = value
    return values


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def parse_config(text: str) -> Config:
    """Parses TOML text into a Config; raises ConfigError with every problem."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"]) from None
    problems: list[str] = []
    sections: dict[str, Any] = {}
    known = {f.name: f for f in fields(Config)}
    hints = get_type_hints(Config)
    for key in raw:
        if key not in known:
            problems.append(f"{key}: unknown section")
    for name in known:
        if name in raw:
            sections[name] = hints[name](**_check_section(hints[name], raw[name], name, problems))
    if problems:
        raise ConfigError(problems)
    return Config(**sections)


def load_config(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not UTF-8 text"]) from None
    return parse_config(text)
