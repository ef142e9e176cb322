"""The candidate sandbox against hostile code: every case is contained, reported in the result (a non-zero
exit or a named limit), changes nothing outside the work directory, and leaves the caller (standing in for
the worker) unharmed — a normal run still works after each one (see the autouse fixture)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from activities.selfmod.sandbox import (
    DATA_ROOT,
    INSTALL_HINT,
    WORKDIR,
    SandboxUnavailable,
    build_command,
    new_workdir,
    remove_workdir,
    run_sandboxed,
    sandbox_python,
)
from autarky.selfmod.types import SandboxLimits, SandboxResult

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")

LIMITS = SandboxLimits(cpu_seconds=3, wall_seconds=10, memory_mib=1024, processes=32, file_size_mib=4)
PROJECT_DIR = Path(sys.prefix).parent  # the virtualenv lives in the project directory


def run_py(
    code: str, workdir: Path, limits: SandboxLimits = LIMITS, *args: str, **kwargs: object
) -> SandboxResult:
    return run_sandboxed([sandbox_python(), "-c", textwrap.dedent(code), *args], workdir, limits, **kwargs)


def stopped(result: SandboxResult) -> bool:
    """The run is reported as failed: a non-zero exit, a signal or a named limit."""
    return result.exit_code != 0 or result.limit is not None


def host_pids_with(marker: str) -> list[int]:
    """Host processes whose command line contains `marker`."""
    needle = marker.encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_no_process_with(marker: str, seconds: float = 10.0) -> list[int]:
    """The processes still there after `seconds` (returns as soon as none is: a busy machine reaps late)."""
    deadline = time.monotonic() + seconds
    while (pids := host_pids_with(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


def snapshot(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() or path.is_symlink() else None


@pytest.fixture
def marker() -> str:
    return f"autarky-sbx-{secrets.token_hex(8)}"


@pytest.fixture(autouse=True)
def worker_unharmed(marker: str) -> Iterator[None]:
    """After each case: this process lives, nothing of the run is left, and a normal run still works."""
    yield
    assert os.getpid() > 0
    os.kill(os.getpid(), 0)
    assert wait_no_process_with(marker) == []
    if shutil.which("bwrap") is None:
        return
    path = new_workdir()
    try:
        result = run_py("print('still fine')", path)
        assert result.ok, result
        assert result.output == "still fine\n"
    finally:
        remove_workdir(path)


# --- 1. network -------------------------------------------------------------------------------------


@needs_bwrap
def test_host_loopback_listener_is_unreachable(workdir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        result = run_py(f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3)", workdir)
        assert stopped(result)
        assert "ConnectionRefusedError" in result.output
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


@needs_bwrap
def test_host_abstract_unix_socket_is_unreachable(workdir: Path, marker: str) -> None:
    # Abstract unix sockets belong to the network namespace, not the file system.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind("\0" + marker)
        listener.listen(8)
        code = """
            import socket, sys
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect("\\0" + sys.argv[1])
        """
        result = run_py(code, workdir, LIMITS, marker)
        assert stopped(result)
        assert "ConnectionRefusedError" in result.output
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()


@needs_bwrap
@pytest.mark.parametrize("address", [("192.0.2.1", 80), ("1.1.1.1", 53), ("8.8.8.8", 443)])
def test_outside_address_is_unreachable(workdir: Path, address: tuple[str, int]) -> None:
    result = run_py(f"import socket; socket.create_connection({address!r}, timeout=3)", workdir)
    assert stopped(result)
    assert "Network is unreachable" in result.output
    assert result.wall_seconds < 3  # refused at once, not a timeout


@needs_bwrap
def test_no_name_resolution_no_udp(workdir: Path) -> None:
    code = """
        import socket
        try:
            socket.getaddrinfo("example.com", 443)
            print("RESOLVED")
        except OSError as e:
            print("no dns:", e)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"x", ("1.1.1.1", 53))
    """
    result = run_py(code, workdir)
    assert stopped(result)
    assert "RESOLVED" not in result.output
    assert "Network is unreachable" in result.output


# --- 2. reading secrets -----------------------------------------------------------------------------


@pytest.fixture
def home_secret(marker: str) -> Iterator[Path]:
    path = Path.home() / f".{marker}"
    path.write_text(f"home-secret-{marker}")
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def aws_credentials(marker: str) -> Iterator[Path]:
    aws = Path.home() / ".aws"
    path = aws / "credentials"
    if aws.exists():  # someone's real credentials: only try to read them, never touch them
        yield path
        return
    aws.mkdir(mode=0o700)
    path.write_text(f"[default]\naws_secret_access_key = aws-secret-{marker}\n")
    try:
        yield path
    finally:
        shutil.rmtree(aws, ignore_errors=True)


@pytest.fixture
def project_secret(marker: str) -> Iterator[Path]:
    """A secret in the project directory and a data directory beside it (like `.autarky`)."""
    path = PROJECT_DIR / f".sandbox-test-secret-{marker}"
    data = PROJECT_DIR / f".sandbox-test-data-{marker}"
    path.write_text(f"project-secret-{marker}")
    data.mkdir()
    (data / "knowledge.db").write_text(f"data-secret-{marker}")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        shutil.rmtree(data, ignore_errors=True)


READ_ATTEMPT = """
    import sys
    for path in sys.argv[1:]:
        try:
            print("READ", path, open(path).read())
        except OSError as e:
            print("REFUSED", path, type(e).__name__)
    sys.exit(3)
"""


@needs_bwrap
def test_home_project_and_credentials_are_invisible(
    workdir: Path, marker: str, home_secret: Path, aws_credentials: Path, project_secret: Path
) -> None:
    data_secret = PROJECT_DIR / f".sandbox-test-data-{marker}" / "knowledge.db"
    targets = [home_secret, aws_credentials, project_secret, data_secret]
    result = run_py(READ_ATTEMPT, workdir, LIMITS, *map(str, targets))
    assert result.exit_code == 3
    assert "READ" not in result.output
    assert result.output.count("REFUSED") == len(targets)
    for kind in ("home", "aws", "project", "data"):
        assert f"{kind}-secret-{marker}" not in result.output


@needs_bwrap
def test_secret_files_cannot_be_found_by_walking_the_tree(
    workdir: Path, marker: str, home_secret: Path, project_secret: Path
) -> None:
    code = """
        import os, sys
        seen = 0
        for top, dirs, files in os.walk("/"):
            if top in ("/proc", "/sys", "/usr", "/dev"):
                dirs.clear()
                continue
            for name in dirs + files:
                seen += 1
                if sys.argv[1] in name:
                    print("FOUND", os.path.join(top, name))
        print("names seen", seen, "home", os.listdir(sys.argv[2]))
        sys.exit(3)
    """
    result = run_py(code, workdir, LIMITS, marker, str(Path.home()))
    assert result.exit_code == 3, result
    assert "FOUND" not in result.output
    assert "names seen" in result.output


@needs_bwrap
def test_environment_secrets_are_not_passed(
    workdir: Path, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets_ = {
        "AUTARKY_OPENAI_API_KEY": f"sk-{marker}-openai",
        "AWS_SECRET_ACCESS_KEY": f"{marker}-aws",
        "AWS_ACCESS_KEY_ID": f"AKIA{marker}",
        "TEMPORAL_API_KEY": f"{marker}-temporal",
    }
    for key, value in secrets_.items():
        monkeypatch.setenv(key, value)
    code = """
        import os
        for key, value in sorted(os.environ.items()):
            print(key, "=", value)
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    print(pid, open(f"/proc/{pid}/environ", "rb").read())
                except OSError as e:
                    print(pid, "environ", type(e).__name__)
        raise SystemExit(3)
    """
    result = run_py(code, workdir)
    assert result.exit_code == 3
    assert "PATH =" in result.output
    for key, value in secrets_.items():
        assert value not in result.output
        assert f"{key} =" not in result.output


# --- 3. writing outside the work directory -------------------------------------------------------


WRITE_ATTEMPT = """
    import sys
    wrote = []
    for path in sys.argv[1:]:
        try:
            with open(path, "a") as f:
                f.write("pwned")
            wrote.append(path)
        except OSError as e:
            print("REFUSED", path, type(e).__name__, e.strerror)
    print("WROTE", wrote)
    sys.exit(3 if not wrote else 0)
"""


@needs_bwrap
def test_writes_outside_the_workdir_fail(workdir: Path, marker: str, project_secret: Path) -> None:
    venv_cfg = Path(sys.prefix) / "pyvenv.cfg"
    targets = [
        Path("/usr") / marker,
        Path("/usr/bin") / marker,
        Path(sys.prefix) / marker,
        Path(sys.prefix) / "bin" / marker,
        venv_cfg,  # an existing file in the virtualenv
        Path(sys.base_prefix) / marker,
        PROJECT_DIR / marker,
        project_secret,  # an existing file in the project
        Path("/") / marker,
        Path.home() / marker,
        Path("/etc") / marker,
        Path("/dev/shm") / marker,
        Path(DATA_ROOT) / marker,
    ]
    before = {path: snapshot(path) for path in targets}
    result = run_py(WRITE_ATTEMPT, workdir, LIMITS, *map(str, targets))
    assert result.exit_code == 3, result.output
    assert "WROTE []" in result.output
    assert result.output.count("REFUSED") == len(targets)
    for path in targets:
        assert snapshot(path) == before[path], path
    assert list(workdir.iterdir()) == []


@needs_bwrap
def test_symlinks_in_the_workdir_do_not_reach_the_host(
    workdir: Path, marker: str, project_secret: Path
) -> None:
    content = project_secret.read_bytes()
    outside_dir = PROJECT_DIR
    code = """
        import os, sys
        target_file, target_dir = sys.argv[1], sys.argv[2]
        os.symlink(target_file, "link-file")
        os.symlink(target_dir, "link-dir")
        os.symlink("/", "link-root")
        results = []
        for path in ("link-file", "link-dir/" + sys.argv[3], "link-root/" + sys.argv[3]):
            try:
                with open(path, "a") as f:
                    f.write("pwned")
                results.append("WROTE " + path)
            except OSError as e:
                results.append(f"REFUSED {path} {e.strerror}")
        try:
            print("READ", open("link-file").read())
        except OSError as e:
            results.append(f"REFUSED read {e.strerror}")
        print("\\n".join(results))
        sys.exit(3)
    """
    result = run_py(code, workdir, LIMITS, str(project_secret), str(outside_dir), marker)
    assert result.exit_code == 3, result.output
    assert "WROTE" not in result.output
    assert "READ" not in result.output
    assert result.output.count("REFUSED") == 4
    assert project_secret.read_bytes() == content
    assert not (outside_dir / marker).exists()
    assert not (Path("/") / marker).exists()
    # The links were made in the run's own /sandbox (a tmpfs), not in the host's work directory.
    assert not (workdir / "link-file").is_symlink()
    remove_workdir(workdir)
    assert not workdir.exists()
    assert project_secret.read_bytes() == content
    assert outside_dir.is_dir()


@needs_bwrap
def test_hard_links_to_visible_files_are_refused(workdir: Path) -> None:
    code = """
        import os, sys
        os.link(sys.executable, "python-hardlink")
    """
    result = run_py(code, workdir)
    assert stopped(result)
    assert not (workdir / "python-hardlink").exists()


# --- 10. the work directory and lent data ----------------------------------------------------------------


@needs_bwrap
def test_workdir_writes_persist_tmp_writes_vanish(workdir: Path, marker: str) -> None:
    code = f"""
        import os, tempfile
        assert os.getcwd() == {WORKDIR!r}, os.getcwd()
        open("{WORKDIR}/result.txt", "w").write("{marker}")
        os.makedirs("sub", exist_ok=True)
        open("sub/nested.txt", "w").write("nested")
        open("/tmp/{marker}", "w").write("temporary")
        with tempfile.NamedTemporaryFile(dir=None, delete=False) as f:
            f.write(b"x")
        print("tmp ok", f.name)
    """
    result = run_py(code, workdir, outputs=["result.txt", "sub/nested.txt"])  # what the run keeps
    assert result.ok, result
    assert (workdir / "result.txt").read_text() == marker
    assert (workdir / "sub" / "nested.txt").read_text() == "nested"
    assert not (Path("/tmp") / marker).exists()
    again = run_py(f"import os; print(os.path.exists('/tmp/{marker}'))", workdir)
    assert again.ok and again.output == "False\n", again


@needs_bwrap
def test_lent_data_is_readable_not_writable(workdir: Path, tmp_path: Path, marker: str) -> None:
    data = tmp_path / "series"
    data.mkdir()
    data.chmod(0o755)
    (data / "points.csv").write_text(f"t,v\n1,{marker}\n")
    (data / "points.csv").chmod(0o644)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    code = f"""
        import os
        print("READ", open("{DATA_ROOT}/series/points.csv").read().strip())
        denied = []
        for attempt in (
            lambda: open("{DATA_ROOT}/series/points.csv", "a").write("x"),
            lambda: open("{DATA_ROOT}/series/new.csv", "w").write("x"),
            lambda: os.unlink("{DATA_ROOT}/series/points.csv"),
            lambda: os.rename("{DATA_ROOT}/series/points.csv", "{WORKDIR}/stolen.csv"),
            lambda: os.mkdir("{DATA_ROOT}/other"),
        ):
            try:
                attempt()
            except OSError as e:
                denied.append(e.strerror)
        print("denied", len(denied), denied)
        raise SystemExit(0 if len(denied) == 5 else 4)
    """
    result = run_py(code, workdir, data={"series": data})
    assert result.ok, result
    assert f"READ t,v\n1,{marker}" in result.output
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before
    assert not (workdir / "stolen.csv").exists()


# --- 11. no bubblewrap ------------------------------------------------------------------------------------


def test_without_bwrap_nothing_runs(workdir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran = tmp_path / "ran"
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert shutil.which("bwrap") is None
    code = f"open({str(ran)!r}, 'w').write('ran'); open('ran', 'w').write('ran')"
    with pytest.raises(SandboxUnavailable) as info:
        run_py(code, workdir)
    assert str(info.value) == INSTALL_HINT
    assert "apt-get install bubblewrap" in str(info.value)
    assert not ran.exists()
    assert list(workdir.iterdir()) == []


def test_printing_like_bubblewrap_is_a_failed_run_not_a_missing_sandbox(workdir: Path) -> None:
    result = run_py("print('bwrap: No permissions to create a new namespace'); raise SystemExit(1)", workdir)
    assert result.exit_code == 1 and "bwrap:" in result.output


def test_a_sandbox_that_cannot_be_set_up_says_so(workdir: Path) -> None:
    with pytest.raises(SandboxUnavailable, match="could not set up the sandbox"):
        run_py("print('ran')", workdir, data={"missing": Path("/nonexistent-lent-dir")})


def test_hidden_files_under_a_visible_directory_cannot_be_read(workdir: Path) -> None:
    """Labels inside an installed package (visible with the system) are masked (by /dev/null, which the
    sandbox may not open: the read fails)."""
    inside = Path(sys.prefix) / f".sandbox-test-labels-{secrets.token_hex(4)}.json"
    inside.write_text('{"relevant": "judge-only-truth"}')
    try:
        shown = run_py(f"print(repr(open({str(inside)!r}).read()))", workdir)
        hidden = run_py(f"print(repr(open({str(inside)!r}).read()))", workdir, hide=[inside])
    finally:
        inside.unlink()
    assert "judge-only-truth" in shown.output  # visible without the mask: the test sees what it hides
    assert hidden.exit_code != 0 and "judge-only-truth" not in hidden.output


def test_tmp_is_mounted_before_what_lives_under_it(tmp_path: Path) -> None:
    """A checkout (and its virtualenv) under /tmp, as CI makes one: the sandbox's own /tmp must not hide
    it, so /tmp is mounted first and the Python and lent data on top."""
    lent = tmp_path / "series"
    lent.mkdir()
    argv = build_command(["true"], tmp_path, LIMITS, data={"series": lent})
    tmpfs = argv.index("/tmp", argv.index("--tmpfs"))
    binds = [i for i, a in enumerate(argv) if a == "--ro-bind" and argv[i + 1].startswith("/tmp/")]
    assert binds and all(i > tmpfs for i in binds)
