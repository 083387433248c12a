"""Real storage back ends for the tests: a PostgreSQL server and an S3 server.

PostgreSQL is Debian's package (``scripts/bootstrap`` installs it when missing), started on a
free port in a temporary folder, with the durability settings of a production server (fsync on:
about 20 s more for the hub's suite than without). S3 is Ceph's radosgw (Debian's package,
``services/visionloop/testing/radosgw.py``): an S3 server production object stores run, which checks signatures and
refuses damaged bodies. ``VISIONLOOP_TEST_S3=moto`` runs the S3 side on moto's server mode
instead (pip-installable, a real HTTP server speaking the S3 protocol, but it checks no
Content-MD5): quick local runs, and the hub benchmark, whose figures were taken on it.
"""

from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from visionloop.testing.ports import free_port

S3_SERVERS = ("radosgw", "moto")


def s3_server_kind() -> str:
    """The S3 server the tests run against: ``VISIONLOOP_TEST_S3``, radosgw by default."""
    kind = os.environ.get("VISIONLOOP_TEST_S3", "radosgw")
    if kind not in S3_SERVERS:
        raise RuntimeError(f"VISIONLOOP_TEST_S3={kind!r}: use one of {', '.join(S3_SERVERS)}")
    return kind


@dataclass(frozen=True)
class S3UnderTest:
    """The tests' S3 server: the hub's S3 settings, and (radosgw) the same server over https."""

    settings: dict[str, str]
    tls_endpoint: str | None = None
    ca: Path | None = None  # the CA of the https endpoint's certificate


@contextmanager
def s3_under_test() -> Iterator[S3UnderTest]:
    """The S3 server the tests run against (``s3_server_kind``)."""
    if s3_server_kind() == "moto":
        with s3_server() as settings:
            yield S3UnderTest(settings)
        return
    from visionloop.testing.radosgw import radosgw_cluster

    with radosgw_cluster() as cluster:
        yield S3UnderTest(cluster.settings(), cluster.tls_endpoint, cluster.ca)


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


@contextmanager
def postgres_server(fsync: bool = True) -> Iterator[str]:
    """Run a throw-away PostgreSQL; yield its URL. ``fsync=False`` for figures taken without it."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed; run scripts/bootstrap (apt-get install postgresql)")
    # Not under pytest's tmp_path: its folders are private to root, and the server runs as postgres.
    workdir = Path(tempfile.mkdtemp(prefix="visionloop-pg-"))
    data = workdir / "pgdata"
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        user = pwd.getpwnam("postgres")
        for path in (workdir, data):
            path.mkdir(exist_ok=True)
            os.chown(path, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "visionloop", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(workdir / "postgres.log"),
            "-o",
            f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c max_connections=200"
            f" -c fsync={'on' if fsync else 'off'}",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(
            [*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "visionloop", "hub"],
            check=True,
            capture_output=True,
        )
        yield f"postgresql://visionloop@127.0.0.1:{port}/hub"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def s3_server(check_signatures: bool = False) -> Iterator[dict[str, str]]:
    """Run moto's S3 server in its own process on a free port; yield the hub's S3 settings.

    A separate process keeps the server off the tests' (and benchmarks') interpreter lock,
    like a real S3 endpoint would be. moto accepts any credentials unless ``check_signatures``:
    then it checks every request's SigV4 signature (and IAM policy), and the settings carry an
    access key it issued to a user allowed everything on S3.
    """
    port = free_port()
    env = dict(os.environ)
    if check_signatures:  # the first three requests (the IAM calls below) go unchecked
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on port {port}") from None
                time.sleep(0.05)
        endpoint = f"http://127.0.0.1:{port}"
        key_id = secret = "testing"
        if check_signatures:
            key_id, secret = _s3_user(endpoint)
        yield {
            "s3_endpoint": endpoint,
            "s3_bucket": "visionloop",
            "s3_access_key_id": key_id,
            "s3_secret_access_key": secret,
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _s3_user(endpoint: str) -> tuple[str, str]:
    """Create an IAM user allowed everything on S3 in moto; its access key id and secret."""
    import boto3

    iam = boto3.client(
        "iam", endpoint_url=endpoint, aws_access_key_id="setup", aws_secret_access_key="setup", region_name="us-east-1"
    )
    iam.create_user(UserName="hub")
    key = iam.create_access_key(UserName="hub")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="hub", PolicyName="s3", PolicyDocument=json.dumps(policy))
    return key["AccessKeyId"], key["SecretAccessKey"]
