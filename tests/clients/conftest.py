"""A real `nimbus serve` for the client tests, and helpers to drive it.

The service runs as a subprocess of the debug binary ($NIMBUS_BIN) on a free loopback
port with a temporary data directory. It writes `<data_dir>/clouds.yaml` itself; the
clients use that file through OS_CLIENT_CONFIG_FILE and the cloud name `nimbus`.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

VENV_BIN = Path(sys.executable).parent
OPENSTACK = str(VENV_BIN / "openstack")

# Fast but still asynchronous fake driver: BUILD, REBOOT, ... are observable.
SPAWN_DELAY = "300ms"
ACTION_DELAY = "150ms"


_skipped = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    # A skipped test hides whatever it would have found: any skip fails the run. Tests of
    # features that are not there yet are deselected explicitly instead (run.sh,
    # NIMBUS_CLIENT_PENDING), which pytest reports as "deselected".
    if _skipped and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_line(
            "FAILED: skipped tests are not allowed here: " + ", ".join(_skipped), red=True
        )


def _die_with_parent():
    """In the child: get SIGTERM when pytest dies, even if it is killed without running its
    teardown (Linux prctl PR_SET_PDEATHSIG), so no nimbus outlives a run."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    except OSError:
        pass


class Nimbus:
    """One running `nimbus serve`."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.log_path = root / "nimbus.log"
        binary = os.environ.get("NIMBUS_BIN")
        if not binary or not os.access(binary, os.X_OK):
            raise RuntimeError(f"NIMBUS_BIN={binary!r} is not an executable nimbus binary")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NIMBUS_", "OS_"))}
        env["NIMBUS_LOG"] = "info"
        self._log = open(self.log_path, "wb")
        # cwd is the temp dir: nimbus also writes ./clouds.yaml there, not in the repo.
        self.proc = subprocess.Popen(
            [
                binary,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(self.data),
                # The default `auto` would pick qemu when QEMU and a guest image are around.
                "--driver",
                "fake",
                "--fake-spawn-delay",
                SPAWN_DELAY,
                "--fake-action-delay",
                ACTION_DELAY,
            ],
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        self.clouds_yaml = self.data / "clouds.yaml"
        deadline = time.monotonic() + 60
        while not self.clouds_yaml.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"nimbus serve exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nimbus serve wrote no clouds.yaml within 60 s:\n{self.log()}")
            time.sleep(0.05)
        # The file may be mid-write: wait until it parses.
        while True:
            try:
                cloud = yaml.safe_load(self.clouds_yaml.read_text())["clouds"]["nimbus"]
                break
            except (TypeError, KeyError, yaml.YAMLError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.auth = cloud["auth"]
        self.auth_url = self.auth["auth_url"]
        self.url = self.auth_url.rsplit("/identity", 1)[0]
        self.region = cloud["region_name"]
        self.admin_password = self.auth["password"]
        # clouds.yaml is written just before the banner is printed: wait for the banner.
        while not (printed := re.search(r"generated password: (\S+)", self.log())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"nimbus did not print the generated admin password:\n{self.log()}")
            time.sleep(0.05)
        assert printed.group(1) == self.admin_password, "printed and written passwords differ"
        while True:
            try:
                with urllib.request.urlopen(self.url + "/identity/v3", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def env(self, **extra) -> dict:
        """Environment for a client subprocess: clouds.yaml from nimbus, cloud `nimbus`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(OS_CLIENT_CONFIG_FILE=str(self.clouds_yaml), OS_CLOUD="nimbus")
        env.update(extra)
        return env

    def stop(self):
        """SIGTERM, as an operator would: nimbus must shut down cleanly (exit 0)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("nimbus serve did not stop within 20 s of SIGTERM")
        self._log.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def nimbus(tmp_path_factory):
    n = Nimbus(tmp_path_factory.mktemp("nimbus"))
    os.environ["OS_CLIENT_CONFIG_FILE"] = str(n.clouds_yaml)
    os.environ.pop("OS_CLOUD", None)
    yield n
    rc = n.stop()
    keep = os.environ.get("NIMBUS_CLIENT_KEEP_LOG")
    if keep:
        shutil.copy(n.log_path, keep)
    assert rc == 0, f"nimbus serve exited with {rc} after SIGTERM:\n{n.log()[-4000:]}"
    panics = [line for line in n.log().splitlines() if "panicked" in line]
    assert not panics, "nimbus logged panics:\n" + "\n".join(panics)


@pytest.fixture(autouse=True)
def _show_log_on_failure(request, nimbus):
    """On a failed test, print the service log lines written during it."""
    start = len(nimbus.log())
    yield
    rep = getattr(request.node, "rep_call", None)
    during = nimbus.log()[start:]
    if rep is not None and rep.failed and during.strip():
        sys.stderr.write(f"\n---- nimbus log during {request.node.name} ----\n")
        sys.stderr.write(during[-8000:])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call = rep


class OSC:
    """The `openstack` command line, as a user types it."""

    def __init__(self, nimbus: Nimbus, extra_args=(), **env):
        self.nimbus = nimbus
        self.extra_args = list(extra_args)
        self.env_extra = env

    def run(self, *args, check=True, timeout=120):
        cmd = [OPENSTACK, *self.extra_args, *args]
        p = subprocess.run(
            cmd,
            env=self.nimbus.env(**self.env_extra),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"`openstack {' '.join(args)}` exited {p.returncode}\n"
                f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
            )
        return p

    def json(self, *args, **kw):
        """Run with `-f json` and decode stdout."""
        p = self.run(*args, "-f", "json", **kw)
        try:
            return json.loads(p.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"`openstack {' '.join(args)}` printed no JSON: {e}\n{p.stdout}\n{p.stderr}")


@pytest.fixture(scope="session")
def osc(nimbus):
    return OSC(nimbus)


@pytest.fixture(scope="session")
def sdk(nimbus):
    import openstack

    conn = openstack.connect(cloud="nimbus")
    yield conn
    conn.close()


def wait_for(what, fn, timeout=60.0, interval=0.2):
    """Poll `fn` until it returns a truthy value; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def image_file(tmp_path_factory):
    """A small raw 'disk image' (the fake driver never boots it)."""
    p = tmp_path_factory.mktemp("img") / "cirros.raw"
    p.write_bytes(b"NIMBUS-TEST-IMAGE\0" * 4096 + bytes(range(256)))
    return p


@pytest.fixture(scope="session")
def cirros(osc, image_file):
    """The image `cirros`, uploaded with `openstack image create --public` (once per session):
    public, so that other projects' users can boot it too (Glance's default is `shared`)."""
    found = osc.json("image", "list", "--name", "cirros")
    if found:
        return found[0]["ID"]
    img = osc.json(
        "image",
        "create",
        "--public",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        str(image_file),
        "cirros",
    )
    return img["id"]
