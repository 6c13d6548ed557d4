"""tapsense: a sensor agent for Linux border taps (DNS, TLS, QUIC metadata and flow counts)."""

__version__ = "0.1.0"
