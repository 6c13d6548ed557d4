"""Capture filters: a tcpdump-style expression compiled to classic BPF with libpcap.

libpcap (libpcap.so.0.8, Debian's libpcap0.8, which tcpdump depends on) is loaded with
ctypes and asked, through pcap_open_dead and pcap_compile, for the program of an
expression for a link type; nothing is opened, so no privilege is needed. The program is
attached to the capture socket with SO_ATTACH_FILTER (agent/capture.py).

A limit to know: libpcap compiles `vlan` tests for tags inside the frame. Interfaces that
strip the tag into the packet's metadata (most NICs with VLAN offload, and veth) need
`ethtool -K IFACE rxvlan off` for such a filter to match.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from functools import cache

PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class BpfInsn(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_ushort),
        ("jt", ctypes.c_ubyte),
        ("jf", ctypes.c_ubyte),
        ("k", ctypes.c_uint),
    ]


class BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(BpfInsn))]


@cache
def _libpcap() -> ctypes.CDLL:
    for name in ("pcap", "pcap.so.0.8"):
        path = ctypes.util.find_library(name) or (f"lib{name}" if "." in name else None)
        if path:
            try:
                lib = ctypes.CDLL(path)
                break
            except OSError:
                continue
    else:
        raise ValueError("libpcap is needed for a capture filter (Debian: libpcap0.8)")
    lib.pcap_open_dead.restype = ctypes.c_void_p
    lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.pcap_compile.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(BpfProgram),
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_uint,
    ]
    lib.pcap_geterr.restype = ctypes.c_char_p
    lib.pcap_geterr.argtypes = [ctypes.c_void_p]
    lib.pcap_freecode.argtypes = [ctypes.POINTER(BpfProgram)]
    lib.pcap_close.argtypes = [ctypes.c_void_p]
    return lib


def compile_filter(
    expression: str, linktype: int = 1, snaplen: int = 262144
) -> list[tuple[int, int, int, int]]:
    """The BPF instructions (code, jt, jf, k) of an expression; ValueError if it is wrong."""
    lib = _libpcap()
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:
        raise ValueError("libpcap could not open a dead handle")
    program = BpfProgram()
    try:
        if (
            lib.pcap_compile(
                handle, ctypes.byref(program), expression.encode(), 1, PCAP_NETMASK_UNKNOWN
            )
            != 0
        ):
            raise ValueError(f"bad filter {expression!r}: {lib.pcap_geterr(handle).decode()}")
        insns = [
            (
                program.bf_insns[i].code,
                program.bf_insns[i].jt,
                program.bf_insns[i].jf,
                program.bf_insns[i].k,
            )
            for i in range(program.bf_len)
        ]
        lib.pcap_freecode(ctypes.byref(program))
        return insns
    finally:
        lib.pcap_close(handle)


class AttachableFilter:
    """A struct sock_fprog for setsockopt(SO_ATTACH_FILTER), with its instructions kept alive."""

    def __init__(self, insns: list[tuple[int, int, int, int]]) -> None:
        self._array = (BpfInsn * len(insns))(*[BpfInsn(*i) for i in insns])
        address = ctypes.addressof(self._array)
        self.fprog = struct.pack("HL", len(insns), address)


def filter_problems(expression: str) -> list[str]:
    """A capture filter that libpcap cannot compile, as config problems (empty: none)."""
    if not expression:
        return []
    try:
        compile_filter(expression, 1)
    except ValueError as exc:
        return [f"capture.bpf: {exc}"]
    return []
