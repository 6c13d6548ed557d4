from typing import Any

DnsQuestion = tuple[str, int, int]
DnsAnswer = tuple[str, int, int, str]
DnsMessage = tuple[
    int,
    int,
    tuple[int, int, int, int],
    list[DnsQuestion],
    list[DnsAnswer],
    dict[str, Any] | None,
    str | None,
]

def parse_dns(data: bytes | bytearray | memoryview) -> tuple[int, DnsMessage | None]: ...
