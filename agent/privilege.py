"""Dropping privileges once the capture sockets are open.

Capture needs CAP_NET_RAW to open its sockets and nothing after. A process started as
root switches to an unprivileged user (its groups, then its gid, then its uid); any
process then clears every capability it still holds (effective, permitted, inheritable
and ambient, capset(2) and prctl(2) through libc) and sets no_new_privs, so nothing it
executes can gain privileges either. /proc/self/status shows the result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pwd
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SYS_CAPSET = 126  # x86_64
LINUX_CAPABILITY_VERSION_3 = 0x20080522


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def drop(user: str) -> None:
    """Becomes `user` if root, then keeps no capability. OSError/KeyError if it cannot."""
    libc = _libc()
    if os.geteuid() == 0 and user:
        entry = pwd.getpwnam(user)
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    if libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        if err != 22:  # EINVAL: a kernel without ambient capabilities
            raise OSError(err, os.strerror(err))
    header = ctypes.create_string_buffer(struct.pack("Ii", LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(bytes(24))  # two __user_cap_data_struct, all zero
    if libc.syscall(SYS_CAPSET, header, data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"no_new_privs: {os.strerror(err)}")
