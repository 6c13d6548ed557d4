"""config/tapsense.toml is valid and names every option with its default value."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

from agent.config import Config, load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "tapsense.toml"


def test_example_config_is_valid_and_complete() -> None:
    assert load_config(EXAMPLE) == Config()
    raw = tomllib.loads(EXAMPLE.read_text())
    for section in fields(Config):
        defaults = getattr(Config(), section.name)
        for option in fields(defaults):
            assert option.name in raw[section.name], f"{section.name}.{option.name} missing"
            default = getattr(defaults, option.name)
            value = raw[section.name][option.name]
            assert (tuple(value) if isinstance(value, list) else value) == default


def test_demo_config_is_valid() -> None:
    """`make demo` runs on config/demo.toml: a collector and a sensor on loopback."""
    demo = load_config(EXAMPLE.with_name("demo.toml"))
    assert demo.ship.url.startswith("tcp://127.0.0.1:")
    assert demo.collect.listen == demo.ship.url.removeprefix("tcp://")
    assert demo.privacy.clients == "cryptopan" and demo.intel.files
