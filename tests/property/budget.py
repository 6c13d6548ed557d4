"""Example counts for the property tests, scaled by TAPSENSE_PROPERTY_SCALE (default 1).

The default keeps `pytest tests/property` near 30 s; `TAPSENSE_PROPERTY_SCALE=20` is a long run
by hand.
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("TAPSENSE_PROPERTY_SCALE", "1"))


def examples(n: int) -> int:
    return max(1, round(n * SCALE))
