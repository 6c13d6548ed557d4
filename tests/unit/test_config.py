"""agent.config: TOML into frozen dataclasses, every problem reported at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent.config import (
    Config,
    ConfigError,
    DnsConfig,
    FlowConfig,
    FragmentConfig,
    LogConfig,
    SensorConfig,
    load_config,
    parse_config,
)

FULL = """
[sensor]
id = "tap-7"

[flow]
max_flows = 1000
tcp_timeout_s = 120.5
tcp_closed_timeout_s = 2.0
udp_timeout_s = 30.0
other_timeout_s = 15.0
active_timeout_s = 0.0
key_vlan = false
key_tunnel = false

[fragments]
max_datagrams = 16
timeout_s = 5.0

[dns]
timeout_s = 2.5
max_pending = 100
max_tcp_streams = 10
tcp_payload_cap = 4096

[log]
level = "debug"
stats_interval_s = 10.0
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "tapsense.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert str(caught.value) == "; ".join(caught.value.problems)
    return caught.value.problems


def test_defaults() -> None:
    config = Config()
    assert config.sensor.id == ""  # the host name
    assert config.flow == FlowConfig(
        max_flows=131072,
        tcp_timeout_s=300.0,
        tcp_closed_timeout_s=5.0,
        udp_timeout_s=60.0,
        other_timeout_s=60.0,
        active_timeout_s=120.0,
        key_vlan=True,
        key_tunnel=True,
    )
    assert config.fragments == FragmentConfig(max_datagrams=256, timeout_s=30.0)
    assert config.dns == DnsConfig(
        timeout_s=10.0, max_pending=65536, max_tcp_streams=4096, tcp_payload_cap=262144
    )
    assert config.log == LogConfig(level="info", stats_interval_s=60.0)


def test_empty_file_and_empty_sections_are_the_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == Config()
    assert parse_config("[flow]\n[dns]\n[log]\n") == Config()


def test_full_valid_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, FULL))
    assert config == Config(
        sensor=SensorConfig(id="tap-7"),
        flow=FlowConfig(
            max_flows=1000,
            tcp_timeout_s=120.5,
            tcp_closed_timeout_s=2.0,
            udp_timeout_s=30.0,
            other_timeout_s=15.0,
            active_timeout_s=0.0,
            key_vlan=False,
            key_tunnel=False,
        ),
        fragments=FragmentConfig(max_datagrams=16, timeout_s=5.0),
        dns=DnsConfig(timeout_s=2.5, max_pending=100, max_tcp_streams=10, tcp_payload_cap=4096),
        log=LogConfig(level="debug", stats_interval_s=10.0),
    )


def test_a_partial_section_keeps_the_other_defaults() -> None:
    config = parse_config("[flow]\nudp_timeout_s = 5.0\n")
    assert config.flow.udp_timeout_s == 5.0
    assert config.flow.tcp_timeout_s == 300.0
    assert config.dns == DnsConfig()


def test_every_problem_is_listed_at_once() -> None:
    problems = problems_of(
        """
        shipping = 3

        [flows]
        max_flows = 1

        [flow]
        max_flow = 10
        max_flows = "many"
        tcp_timeout_s = 0.5
        udp_timeout_s = 100000
        key_vlan = "yes"

        [fragments]
        max_datagrams = -1

        [dns]
        timeout_s = "10s"

        [log]
        level = "verbose"
        """
    )
    expected = {
        "shipping": "unknown section",
        "flows": "unknown section",
        "flow.max_flow": "unknown option",
        "flow.max_flows": "expected int",
        "flow.tcp_timeout_s": "outside",
        "flow.udp_timeout_s": "outside",
        "flow.key_vlan": "expected bool",
        "fragments.max_datagrams": "outside",
        "dns.timeout_s": "expected float",
        "log.level": "not one of",
    }
    assert len(problems) == len(expected), problems
    for key, why in expected.items():
        assert any(p.startswith(f"{key}: ") and why in p for p in problems), (key, problems)


def test_a_section_that_is_not_a_table() -> None:
    assert problems_of('flow = 3\ndns = "x"\n') == ["flow: must be a table", "dns: must be a table"]


def test_float_fields_accept_ints() -> None:
    config = parse_config("[flow]\ntcp_timeout_s = 30\n[dns]\ntimeout_s = 1\n")
    assert config.flow.tcp_timeout_s == 30.0
    assert type(config.flow.tcp_timeout_s) is float
    assert type(config.dns.timeout_s) is float


def test_int_fields_refuse_floats() -> None:
    (problem,) = problems_of("[flow]\nmax_flows = 10.0\n")
    assert problem.startswith("flow.max_flows: expected int")


@pytest.mark.parametrize(
    "line",
    [
        "[flow]\nmax_flows = true",
        "[flow]\ntcp_timeout_s = false",
        "[dns]\nmax_pending = true",
        "[flow]\nkey_vlan = 1",
        "[sensor]\nid = 1",
    ],
)
def test_bools_and_ints_do_not_mix(line: str) -> None:
    (problem,) = problems_of(line + "\n")
    assert "expected" in problem


def test_bounds_are_inclusive() -> None:
    config = parse_config(
        "[flow]\nmax_flows = 1\nactive_timeout_s = 0\ntcp_closed_timeout_s = 3600\n"
        "[fragments]\nmax_datagrams = 0\n"
    )
    assert (config.flow.max_flows, config.fragments.max_datagrams) == (1, 0)
    (problem,) = problems_of("[flow]\nmax_flows = 0\n")
    assert problem == "flow.max_flows: 0 is outside [1, 67108864]"


@pytest.mark.parametrize("value", ["nan", "-nan", "inf", "-inf"])
def test_timeouts_must_be_numbers(value: str) -> None:
    # NaN compares false with both bounds; it must not pass as a timeout.
    (problem,) = problems_of(f"[flow]\nudp_timeout_s = {value}\n")
    assert problem.startswith("flow.udp_timeout_s: ")


def test_not_toml() -> None:
    (problem,) = problems_of("[flow\nmax_flows = 1\n")
    assert problem.startswith("not valid TOML")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "missing.toml")
    assert "missing.toml" in missing.value.problems[0]
    with pytest.raises(ConfigError):
        load_config(tmp_path)  # a directory
    with pytest.raises(ConfigError) as binary:
        load_config(write(tmp_path, b"[flow]\nmax_flows = 1\n\xff\xfe\n"))
    assert "UTF-8" in binary.value.problems[0]


def test_config_is_frozen() -> None:
    config = parse_config(FULL)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.flow.max_flows = 5  # type: ignore[misc]
    assert not hasattr(config.flow, "__dict__")  # slotted
