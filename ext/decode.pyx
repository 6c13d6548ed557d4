# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Python entry point to the frame decoder, for tests, fuzzing and tools.

The engine calls the same inline decoder (ext/_decode.pxd) per packet
without crossing into Python; this wrapper decodes one frame and returns
its fields as a dict.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize

from _decode cimport (FRAGMENT, OPT_KEY_TUNNEL, OPT_KEY_VLAN, Packet, decode_frame)
from _wire cimport OK, TRUNCATED

LAYER_NAMES = ("link", "ether", "vlan", "mpls", "pppoe", "ppp", "gre", "erspan", "vxlan",
               "geneve", "teredo", "gtp", "ipv4", "ipv6", "ipv6_ext", "frag", "tcp", "udp",
               "icmp", "sctp", "tunnel")
STATUS_FRAGMENT = FRAGMENT


def parse_frame(const unsigned char[::1] frame, int linktype=1, int vlan_tci=-1,
                bint key_vlan=True, bint key_tunnel=True):
    """Decodes one frame of a capture link type; returns (status, fields or None).

    status is OK, FRAGMENT (fields describe the fragment) or a failure status,
    in which case fields is {"layer": name} for where the failure arose.
    """
    cdef Packet pk
    cdef int st
    cdef int opts = (OPT_KEY_VLAN if key_vlan else 0) | (OPT_KEY_TUNNEL if key_tunnel else 0)
    if frame.shape[0] == 0:
        return TRUNCATED, {"layer": "link"}
    st = decode_frame(&frame[0], frame.shape[0], <unsigned short>linktype,
                      <unsigned short>(vlan_tci if vlan_tci >= 0 else 0), vlan_tci >= 0,
                      opts, &pk)
    if st != OK and st != FRAGMENT:
        return st, {"layer": LAYER_NAMES[pk.err_layer]}
    n = 4 if pk.family == 4 else 16
    fields = {
        "family": pk.family,
        "src": PyBytes_FromStringAndSize(<const char*>pk.src, n),
        "dst": PyBytes_FromStringAndSize(<const char*>pk.dst, n),
        "proto": pk.proto,
        "sport": pk.sport,
        "dport": pk.dport,
        "ip_len": pk.ip_len,
        "tunnels": pk.tunnels,
        "vlans": pk.vlans,
        "vlan_id": pk.vlan_id,
        "ctx": pk.ctx,
        "tcp_flags": pk.tcp_flags,
        "seq": pk.seq,
        "payload": (PyBytes_FromStringAndSize(<const char*>pk.payload, pk.payload_len)
                    if pk.payload != NULL else b""),
        "payload_wire": pk.payload_wire,
    }
    if st == FRAGMENT:
        fields["frag_offset"] = pk.frag_offset
        fields["frag_more"] = bool(pk.frag_more)
        fields["frag_id"] = pk.frag_id
    return st, fields
