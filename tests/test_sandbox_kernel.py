"""The sandbox's kernel surface against a hostile candidate: each attempt to reach the kernel's riskier paths
(new user namespaces, nested bubblewrap, io_uring, the worker's keyring, unusual socket families, bpf,
perf, ptrace, personality, 32-bit system calls) fails inside the real sandbox, with the errno the seccomp
filter gives, while a normal program still runs. After each case the caller (standing in for the worker)
keeps its own session keyring, holds no leftover filter file, and a normal run still works."""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pyseccomp
import pytest

from activities.selfmod import keyring
from activities.selfmod.sandbox import new_workdir, remove_workdir, run_sandboxed, sandbox_python
from activities.selfmod.seccomp_filter import seccomp_program
from autarky.selfmod.types import SandboxLimits, SandboxResult

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
x86_64_only = pytest.mark.skipif(platform.machine() != "x86_64", reason="32-bit system calls of x86-64")

LIMITS = SandboxLimits(cpu_seconds=10, wall_seconds=30, memory_mib=1024, processes=32, file_size_mib=4)
KEY_SPEC_SESSION_KEYRING = -3
KEYCTL_GET_KEYRING_ID, KEYCTL_READ, KEYCTL_INVALIDATE = 0, 11, 21
_libc = ctypes.CDLL(None, use_errno=True)

# What the code run inside starts with: a syscall helper printing "name: ok <value>" or "name: <ERRNO>".
PRELUDE = """
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
def call(name, number, *args):
    result = libc.syscall(ctypes.c_long(number), *args)
    code = ctypes.get_errno()
    print(f"{name}: ok {result}" if result >= 0 else f"{name}: {errno.errorcode.get(code, code)}", flush=True)
    return result
"""


def nr(name: str) -> int:
    """This machine's number of a system call (the code inside calls them by number)."""
    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


def run_py(code: str, workdir: Path, *args: str) -> SandboxResult:
    program = PRELUDE + textwrap.dedent(code)
    return run_sandboxed([sandbox_python(), "-c", program, *args], workdir, LIMITS)


def run(command: list[str], workdir: Path) -> SandboxResult:
    return run_sandboxed(command, workdir, LIMITS)


def session_keyring() -> int:
    """This process's session keyring (made here if it has none: a key test adds to it)."""
    return _libc.syscall(
        ctypes.c_long(nr("keyctl")), ctypes.c_long(KEYCTL_GET_KEYRING_ID), ctypes.c_long(-3), ctypes.c_long(1)
    )


def seccomp_files_open() -> list[str]:
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if "autarky-seccomp" in target:
            found.append(target)
    return found


@pytest.fixture(autouse=True)
def worker_unharmed() -> Iterator[None]:
    """The run's fresh keyring is the child's, not the caller's; the filter's file is closed; a normal run
    still works."""
    before = session_keyring()
    yield
    assert session_keyring() == before
    assert seccomp_files_open() == []
    if shutil.which("bwrap") is None:
        return
    path = new_workdir()
    try:
        result = run([sandbox_python(), "-c", "print('still fine')"], path)
        assert result.ok and result.output == "still fine\n", result
    finally:
        remove_workdir(path)


def test_the_filter_is_a_bpf_program() -> None:
    program = seccomp_program()
    assert program and len(program) % 8 == 0  # struct sock_filter: 8 bytes each
    assert len(program) // 8 < 4096  # BPF_MAXINSNS
    assert seccomp_program() is program  # built once


# --- what a sandboxed run is ------------------------------------------------------------------------


@needs_bwrap
def test_every_run_is_filtered_without_new_privileges(workdir: Path) -> None:
    result = run(["grep", "-E", "^(Seccomp|NoNewPrivs|CapEff|CapBnd):", "/proc/self/status"], workdir)
    assert result.ok, result
    assert "Seccomp:\t2" in result.output  # 2: a filter, not strict mode, not none
    assert "NoNewPrivs:\t1" in result.output
    assert "CapEff:\t0000000000000000" in result.output


@needs_bwrap
def test_the_result_names_its_protections(workdir: Path) -> None:
    result = run(["true"], workdir)
    assert result.ok, result
    for protection in ("seccomp filter", "no user namespaces", "no capabilities", "no new privileges"):
        assert protection in result.protections
    assert ("own session keyring" in result.protections) == keyring.supported()
    if os.geteuid() == 0:
        assert any(p.startswith("unprivileged uid ") for p in result.protections)


@needs_bwrap
def test_a_normal_program_still_works(workdir: Path) -> None:
    """Threads (clone3 falls back to clone), subprocesses and posix_spawn, unix and inet sockets, asyncio."""
    code = """
        import asyncio, concurrent.futures, json, os, socket, subprocess
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            assert sum(pool.map(lambda x: x * x, range(100))) == 328350
        assert subprocess.run(["/bin/true"]).returncode == 0
        out = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True).stdout
        assert out == "42\\n", out
        pid = os.posix_spawn("/bin/true", ["true"], {})
        assert os.waitpid(pid, 0)[1] == 0
        a, b = socket.socketpair()
        a.sendall(b"ping")
        assert b.recv(4) == b"ping"
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname(), timeout=5)
        conn, _ = server.accept()
        client.sendall(b"pong")
        assert conn.recv(4) == b"pong"
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
        asyncio.run(asyncio.sleep(0.01))
        call("personality query", nr_personality, ctypes.c_ulong(0xFFFFFFFF))
        print(json.dumps({"all": "ok"}))
    """
    result = run_py(f"nr_personality = {nr('personality')}\n" + textwrap.dedent(code), workdir)
    assert result.ok, result.output
    assert '{"all": "ok"}' in result.output
    assert "personality query: ok" in result.output


# --- user namespaces ---------------------------------------------------------------------------------


@needs_bwrap
def test_unshare_cannot_make_a_user_namespace(workdir: Path) -> None:
    """`unshare -Ur` would make the candidate root with full capabilities in a namespace of its own."""
    result = run(["unshare", "-Ur", "id", "-u"], workdir)
    assert result.exit_code != 0
    assert "Operation not permitted" in result.output
    assert "\n0\n" not in f"\n{result.output}"


@needs_bwrap
def test_no_namespace_to_mount_in_or_open_raw_sockets(workdir: Path) -> None:
    """`unshare -Urnm` then a tmpfs and an AF_PACKET socket: the namespace is refused, and neither works
    where the candidate is either."""
    script = (
        "unshare -Urnm sh -c 'mount -t tmpfs none /tmp && echo MOUNTED'; "
        "mount -t tmpfs none /tmp && echo MOUNTED; "
        "python -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW); print(\"RAW\")'; "
        "exit 1"
    )
    result = run(["sh", "-c", script], workdir)
    assert "unshare failed: Operation not permitted" in result.output
    assert "MOUNTED" not in result.output and "RAW" not in result.output
    assert "Address family not supported" in result.output


@needs_bwrap
def test_clone_and_unshare_with_namespace_flags_fail(workdir: Path) -> None:
    code = f"""
        CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET = 0x10000000, 0x00020000, 0x40000000
        SIGCHLD = 17
        for flag in (CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWUSER | CLONE_NEWNET):
            call(f"unshare {{flag:#x}}", {nr("unshare")}, ctypes.c_long(flag))
            # a fork with a new namespace: a child that got through would print and exit
            nothing = [None] * 4
            if call(f"clone {{flag:#x}}", {nr("clone")}, ctypes.c_long(flag | SIGCHLD), *nothing) == 0:
                print("CHILD IN A NEW NAMESPACE", flush=True)
                libc._exit(0)
        call("clone3", {nr("clone3")}, None, ctypes.c_long(0))
        call("setns", {nr("setns")}, ctypes.c_long(0), ctypes.c_long(0))
    """
    result = run_py(code, workdir)
    assert result.ok, result.output
    assert "CHILD IN A NEW NAMESPACE" not in result.output and ": ok" not in result.output
    assert result.output.count("EPERM") == 9  # 4 unshare, 4 clone, setns
    assert "clone3: ENOSYS" in result.output


@needs_bwrap
def test_nested_bubblewrap_cannot_start(workdir: Path) -> None:
    bwrap = shutil.which("bwrap")
    assert bwrap is not None
    result = run([bwrap, "--unshare-user", "--uid", "0", "--ro-bind", "/", "/", "id", "-u"], workdir)
    assert result.exit_code != 0
    assert result.output.startswith("bwrap:"), result.output
    assert "\n0\n" not in f"\n{result.output}"


# --- kernel interfaces ------------------------------------------------------------------------------


@needs_bwrap
def test_io_uring_is_absent(workdir: Path) -> None:
    code = f"""
        params = ctypes.create_string_buffer(120)  # struct io_uring_params
        call("io_uring_setup", {nr("io_uring_setup")}, ctypes.c_long(8), params)
        call("io_uring_enter", {nr("io_uring_enter")}, ctypes.c_long(0), *[ctypes.c_long(0)] * 5)
        call("io_uring_register", {nr("io_uring_register")}, *[ctypes.c_long(0)] * 4)
    """
    result = run_py(code, workdir)
    assert result.ok, result.output
    assert result.output.count("ENOSYS") == 3, result.output


@pytest.fixture
def worker_key() -> Iterator[tuple[int, bytes]]:
    """A key in this process's session keyring, as a worker would hold one."""
    payload = b"worker-key-" + os.urandom(8).hex().encode()
    serial = _libc.syscall(
        ctypes.c_long(nr("add_key")),
        b"user",
        b"autarky-test-" + os.urandom(4).hex().encode(),
        payload,
        ctypes.c_long(len(payload)),
        ctypes.c_long(KEY_SPEC_SESSION_KEYRING),
    )
    if serial < 0:
        pytest.fail(f"add_key failed here: {errno.errorcode.get(ctypes.get_errno())}")
    try:
        yield serial, payload
    finally:
        _libc.syscall(ctypes.c_long(nr("keyctl")), ctypes.c_long(KEYCTL_INVALIDATE), ctypes.c_long(serial))


def read_key(serial: int) -> str:
    return f"""
        buf = ctypes.create_string_buffer(256)
        read = ctypes.c_long({KEYCTL_READ})
        n = call("keyctl read", {nr("keyctl")}, read, ctypes.c_long({serial}), buf, ctypes.c_long(256))
        if n > 0:
            print("READ", buf.raw[:n].decode(), flush=True)
    """


@needs_bwrap
def test_the_workers_key_cannot_be_read(workdir: Path, worker_key: tuple[int, bytes]) -> None:
    serial, payload = worker_key
    code = (
        read_key(serial)
        + f"""
        call("keyctl session", {nr("keyctl")}, ctypes.c_long(0), ctypes.c_long(-3), ctypes.c_long(0))
        call("add_key", {nr("add_key")}, b"user", b"x", b"y", ctypes.c_long(1), ctypes.c_long(-3))
        call("request_key", {nr("request_key")}, b"user", b"x", None, ctypes.c_long(-3))
    """
    )
    result = run_py(code, workdir)
    assert payload.decode() not in result.output
    assert result.output.count("EPERM") == 4, result.output


def test_a_fresh_session_keyring_does_not_hold_the_workers_key(worker_key: tuple[int, bytes]) -> None:
    """The second wall, without the filter: a child that joined a new session keyring (as the sandbox's
    does before bubblewrap) cannot read the key its parent's session keyring holds; one that did not can."""
    if not keyring.supported():
        pytest.skip(f"keyctl's number is not known on {platform.machine()}")
    serial, payload = worker_key
    program = PRELUDE + textwrap.dedent(read_key(serial))
    inherited = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)
    fresh = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=keyring.join_new_session_keyring,
    )
    assert f"READ {payload.decode()}" in inherited.stdout  # the test sees what it hides
    assert payload.decode() not in fresh.stdout
    assert "keyctl read: EACCES" in fresh.stdout or "keyctl read: ENOKEY" in fresh.stdout, fresh.stdout


# --- sockets -----------------------------------------------------------------------------------------


@needs_bwrap
@pytest.mark.parametrize(
    ("family", "kind"), [("AF_VSOCK", "SOCK_STREAM"), ("AF_PACKET", "SOCK_RAW"), ("AF_NETLINK", "SOCK_RAW")]
)
def test_unusual_socket_families_fail(workdir: Path, family: str, kind: str) -> None:
    """AF_VSOCK reaches the hypervisor whatever the network namespace; AF_PACKET and AF_NETLINK talk to
    the kernel's network stack. All fail as from a kernel without them (the host's answer differs)."""
    code = f"""
        import socket
        for make in (socket.socket, socket.socketpair):
            try:
                make(socket.{family}, socket.{kind})
                print("OPENED", make.__name__)
            except OSError as e:
                print(make.__name__, errno.errorcode[e.errno])
    """
    result = run_py(code, workdir)
    assert "OPENED" not in result.output
    assert result.output.count("EAFNOSUPPORT") == 2, result.output


# --- tracing, profiling, bpf, personality ------------------------------------------------------------


@needs_bwrap
def test_bpf_fails(workdir: Path) -> None:
    code = f"""
        attr = ctypes.create_string_buffer(128)  # BPF_MAP_CREATE of a one-slot array map
        ctypes.memmove(attr, (ctypes.c_uint32 * 4)(2, 4, 4, 1), 16)
        call("bpf", {nr("bpf")}, ctypes.c_long(0), attr, ctypes.c_long(128))
    """
    result = run_py(code, workdir)
    assert result.output.strip() == "bpf: EPERM", result.output


@needs_bwrap
def test_perf_event_open_fails(workdir: Path) -> None:
    """A user-space-only software counter on itself, which perf_event_paranoid ≤ 2 would allow."""
    code = f"""
        attr = ctypes.create_string_buffer(128)
        ctypes.memmove(attr, (ctypes.c_uint32 * 2)(1, 128), 8)  # PERF_TYPE_SOFTWARE, size
        ctypes.memmove(ctypes.byref(attr, 8), (ctypes.c_uint64 * 1)(1), 8)  # PERF_COUNT_SW_TASK_CLOCK
        ctypes.memmove(ctypes.byref(attr, 40), (ctypes.c_uint64 * 1)(1 | 32 | 64), 8)  # off, no kernel/hv
        call("perf_event_open", {nr("perf_event_open")}, attr, ctypes.c_long(0), ctypes.c_long(-1),
             ctypes.c_long(-1), ctypes.c_long(0))
    """
    result = run_py(code, workdir)
    assert result.output.strip() == "perf_event_open: EPERM", result.output


@needs_bwrap
def test_ptrace_fails(workdir: Path) -> None:
    """Neither asking to be traced nor attaching to its own child, both allowed without the filter."""
    code = f"""
        import subprocess
        child = subprocess.Popen(["sleep", "5"])
        call("ptrace traceme", {nr("ptrace")}, ctypes.c_long(0), ctypes.c_long(0), None, None)
        call("ptrace attach", {nr("ptrace")}, ctypes.c_long(16), ctypes.c_long(child.pid), None, None)
        call("process_vm_readv", {nr("process_vm_readv")}, ctypes.c_long(child.pid), None, ctypes.c_long(0),
             None, ctypes.c_long(0), ctypes.c_long(0))
        child.kill()
    """
    result = run_py(code, workdir)
    assert result.output.count("EPERM") == 3 and ": ok" not in result.output, result.output


@needs_bwrap
def test_personality_changes_fail_and_the_query_works(workdir: Path) -> None:
    """The kernel reads the low 32 bits only: -1 is a query, and high bits do not hide a change."""
    code = f"""
        for name, persona in [("query", 0xFFFFFFFF), ("query -1", -1), ("linux", 0), ("no-aslr", 0x0040000),
                              ("read-implies-exec", 0x0400000), ("linux32", 0x0008),
                              ("high-bits", 0x1_0004_0000), ("all-but-one", 0xFFFFFFFE)]:
            call(name, {nr("personality")}, ctypes.c_long(persona))
        print("glibc query", libc.personality(ctypes.c_ulong(0xFFFFFFFF)))
    """
    result = run_py(code, workdir)
    assert result.ok, result.output
    for name in ("query", "query -1", "linux"):
        assert f"{name}: ok 0" in result.output, result.output
    assert "glibc query 0" in result.output
    for name in ("no-aslr", "read-implies-exec", "linux32", "high-bits", "all-but-one"):
        assert f"{name}: EPERM" in result.output


# --- other architectures' system calls ---------------------------------------------------------------

I386_GETPID = """
import ctypes, mmap, os
page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
page.write(b"\\xb8\\x14\\x00\\x00\\x00\\xcd\\x80\\xc3")  # mov eax, 20 (i386 getpid); int 0x80; ret
getpid = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
print("SURVIVED", getpid() == os.getpid(), flush=True)
"""


@needs_bwrap
@x86_64_only
def test_32_bit_system_calls_kill_the_process(workdir: Path) -> None:
    """`int 0x80` reaches the i386 table, which no rule names: the filter kills the process instead."""
    outside = subprocess.run([sys.executable, "-c", I386_GETPID], capture_output=True, text=True, timeout=30)
    result = run([sandbox_python(), "-c", I386_GETPID], workdir)
    assert "SURVIVED" not in result.output
    if outside.stdout.strip() == "SURVIVED True":  # the kernel runs 32-bit calls: the filter stopped it
        assert result.signal == signal.SIGSYS, result
    else:
        assert result.exit_code != 0


@needs_bwrap
@x86_64_only
def test_x32_system_calls_kill_the_process(workdir: Path) -> None:
    code = 'import ctypes; ctypes.CDLL(None).syscall(0x40000000 | 39); print("SURVIVED", flush=True)'
    result = run([sandbox_python(), "-c", code], workdir)
    assert "SURVIVED" not in result.output
    assert result.signal == signal.SIGSYS, result
