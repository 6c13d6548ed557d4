"""Fixtures shared by every test layer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CORPUS_ENV = "TAPSENSE_CORPUS"
# the scapy functions that put packets on the host's network
_SCAPY_SENDERS = ("send", "sendp", "sr", "sr1", "srp", "srp1", "srloop", "srploop", "sniff")


def _refuse_to_send(*_args: object, **_kwargs: object) -> None:
    raise RuntimeError(
        "a test tried to send or sniff with scapy on the host's network: build frames with "
        "explicit addresses (Ether(src=..., dst=...)) and use network namespaces for traffic"
    )


@pytest.fixture(scope="session", autouse=True)
def _no_scapy_traffic() -> None:
    """Tests build frames with scapy but never send them: an Ether() without dst makes
    scapy ARP for the address on the host's interface, which a test must never do."""
    try:
        import scapy.layers.l2 as l2
        import scapy.sendrecv as sendrecv
    except ImportError:
        return
    for module in (sendrecv, l2):
        for name in _SCAPY_SENDERS:
            if hasattr(module, name):
                setattr(module, name, _refuse_to_send)


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The public capture corpus: skipped when TAPSENSE_CORPUS is unset (a user's clone),
    a failure when it is set and the folder is missing (CI must have it)."""
    value = os.environ.get(CORPUS_ENV)
    if not value:
        pytest.skip(f"{CORPUS_ENV} is not set")
    path = Path(value)
    if not (path / "truth").is_dir():
        pytest.fail(f"{CORPUS_ENV}={value} has no truth/ folder")
    return path
