from typing import Any

LAYER_NAMES: tuple[str, ...]
STATUS_FRAGMENT: int

def parse_frame(
    frame: bytes | bytearray | memoryview,
    linktype: int = ...,
    vlan_tci: int = ...,
    key_vlan: bool = ...,
    key_tunnel: bool = ...,
) -> tuple[int, dict[str, Any]]: ...
