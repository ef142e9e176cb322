"""A fresh session keyring for a sandboxed run, so the worker's keys are out of its reach.

A process inherits its parent's session keyring: without this, a command in the sandbox could read the
keys the worker holds there (the seccomp filter denies `keyctl` too; this is the second wall). Joining a
new, anonymous session keyring in the child between fork and exec leaves the worker's own untouched.
"""

from __future__ import annotations

import ctypes
import errno
import platform

KEYCTL_JOIN_SESSION_KEYRING = 1
# keyctl's number where glibc has no wrapper for it (libkeyutils has one, but is not a dependency).
_KEYCTL = {"x86_64": 250, "aarch64": 219, "riscv64": 219}.get(platform.machine())
_libc = ctypes.CDLL(None, use_errno=True)


def supported() -> bool:
    """This machine's keyctl number is known (elsewhere the child keeps the inherited keyring)."""
    return _KEYCTL is not None


def join_new_session_keyring() -> None:
    """Runs in the child between fork and exec. A kernel without keyrings, or a filter that already
    denies them (a container's), leaves nothing to reach: that is not an error."""
    if _KEYCTL is None:
        return
    if _libc.syscall(ctypes.c_long(_KEYCTL), ctypes.c_long(KEYCTL_JOIN_SESSION_KEYRING), None) >= 0:
        return
    code = ctypes.get_errno()
    if code not in (errno.ENOSYS, errno.EPERM):
        raise OSError(code, f"cannot give the sandbox its own session keyring: {errno.errorcode.get(code)}")
