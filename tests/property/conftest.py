"""Property-test settings: no deadline (the first example pays for scapy's imports), scapy quiet."""

from __future__ import annotations

import logging

from hypothesis import HealthCheck, settings

# scapy warns about missing checksum underlayers on every L4 layer built on its own.
logging.getLogger("scapy").setLevel(logging.ERROR)

settings.register_profile(
    "tapsense",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("tapsense")
