"""The seccomp filter every sandboxed command runs under, as the BPF program bubblewrap loads
(`bwrap --seccomp FD`) right before it starts the command.

Everything is allowed except the kernel paths a hostile candidate would use to get out or to reach the
host, which fail with an error a program can handle:
- new namespaces (`unshare`/`clone` with a CLONE_NEW* flag) and `setns`: no user namespace in which the
  candidate is root with full capabilities, so no nested bubblewrap, no `unshare -Ur`; `clone3` takes its
  flags in memory, out of the filter's sight, so it fails as if the kernel lacked it (ENOSYS) and the C
  library falls back to `clone`;
- the kernel keyrings (`keyctl`, `add_key`, `request_key`), `io_uring_*` (ENOSYS: callers fall back to
  plain I/O), `bpf`, `perf_event_open`, `userfaultfd`;
- other processes' memory (`ptrace`, `process_vm_*`, `process_madvise`, `pidfd_getfd`, `kcmp`);
- the mount family, `chroot`, file handles (`open_by_handle_at`), kernel modules, `kexec`, and what only
  an administrator does (reboot, swap, quotas, clocks, the kernel log, I/O ports, accounting);
- `personality` other than the query (0xffffffff) and PER_LINUX (0);
- sockets other than AF_UNIX, AF_INET and AF_INET6 (EAFNOSUPPORT, as from a kernel without the family):
  no AF_VSOCK to the hypervisor (a network namespace does not cover it), no AF_PACKET, no AF_NETLINK.

System calls of another architecture (32-bit `int 0x80`, x32) kill the process: they would bypass every
rule, which names the native calls.

As root, the sandbox cannot also have a user namespace of its own with `--disable-userns`: bubblewrap run
by root maps only the sandbox's uid, to root outside, so either the command's unprivileged uid is unmapped
(`setpriv` fails) or it is root on the host. The command runs in the host's user namespace then, without
capabilities, and this filter's denial of CLONE_NEWUSER is what keeps it out of new user namespaces.
"""

from __future__ import annotations

import errno
import os
from functools import cache

INSTALL_HINT = (
    "libseccomp is needed to filter the system calls of sandboxed commands and could not be loaded: "
    "`apt-get install libseccomp2` (Debian/Ubuntu), `dnf install libseccomp` (Fedora), and its Python "
    "binding `pip install pyseccomp`. Autarky never runs a candidate without its filter."
)

# Namespace flags of clone/unshare; CLONE_NEWTIME (0x80) only for unshare (in clone's flags those bits
# are the exit signal).
CLONE_NEW = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
CLONE_NEWTIME = 0x00000080

DENIED = (
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "pidfd_getfd",
    "kcmp",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "name_to_handle_at",
    "open_by_handle_at",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "syslog",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "quotactl",
    "quotactl_fd",
    "iopl",
    "ioperm",
    "lookup_dcookie",
    "vhangup",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "sethostname",
    "setdomainname",
    "fanotify_init",
    "uselib",
)
# Fail as if the kernel lacked them: programs fall back (clone3 → clone, io_uring → read/write).
ABSENT = ("clone3", "io_uring_setup", "io_uring_enter", "io_uring_register")
SOCKET_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6


class SeccompUnavailable(RuntimeError):
    """The filter cannot be built here (libseccomp or its binding missing, or too old)."""


@cache
def seccomp_program() -> bytes:
    """The filter as a BPF program (what `bwrap --seccomp FD` reads), built once per process."""
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError, OSError) as error:  # the binding raises RuntimeError without .so
        raise SeccompUnavailable(f"{INSTALL_HINT} ({error})") from error
    deny, absent = sc.ERRNO(errno.EPERM), sc.ERRNO(errno.ENOSYS)
    no_family = sc.ERRNO(errno.EAFNOSUPPORT)
    f = sc.SyscallFilter(sc.ALLOW)
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)

    def add(action: int, name: str, *args: object) -> None:
        number = sc.resolve_syscall(sc.Arch.NATIVE, name)
        if number == -1:  # libseccomp does not know the call: a rule would be missing without a word
            raise SeccompUnavailable(f"libseccomp is too old to know `{name}`: upgrade libseccomp2")
        f.add_rule(action, number, *args)

    for name in DENIED:
        add(deny, name)
    for name in ABSENT:
        add(absent, name)
    for flag in CLONE_NEW:
        add(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    for flag in (*CLONE_NEW, CLONE_NEWTIME):
        add(deny, "unshare", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    # A rule compares an argument once, and rules add up (any match denies): so the allowed families
    # are the gaps between denied ones, and anything above AF_INET6 (any high bits too) is denied.
    high = max(SOCKET_FAMILIES)
    for name in ("socket", "socketpair"):
        for family in range(high):
            if family not in SOCKET_FAMILIES:
                add(no_family, name, sc.Arg(0, sc.EQ, family))
        add(no_family, name, sc.Arg(0, sc.GT, high))
    # personality: everything but 0 and 0xffffffff in the low 32 bits (the kernel reads no more, and -1
    # is a query too). Any other 32-bit value has a set bit followed (cyclically) by a clear one, which
    # one masked comparison per bit pair catches.
    for bit in range(32):
        pair = (1 << bit) | (1 << ((bit + 1) % 32))
        add(deny, "personality", sc.Arg(0, sc.MASKED_EQ, pair, 1 << bit))
    fd = os.memfd_create("autarky-seccomp")
    with open(fd, "w+b") as program:
        f.export_bpf(program)
        program.seek(0)
        return program.read()
