"""A one-node Ceph cluster with its S3 gateway (radosgw) on loopback, for the tests' S3 side.

Debian's ``radosgw``, ``ceph-mon`` and ``ceph-osd`` (``scripts/bootstrap`` installs them): one
monitor, one OSD on memstore (objects in the OSD's memory: nothing to format, nothing left on
disk) and radosgw's beast frontend over http and https (a throw-away CA), all in a temporary
folder, as the user running the tests. It is an S3 server production object stores run: it
checks every request's SigV4 signature and refuses a body that does not match its Content-MD5
(``BadDigest``), which moto does not.

Cephx is off between the daemons (one host, loopback only); S3 clients still authenticate with
the access key radosgw issued. Pools get one replica and 8 placement groups: one OSD holds them
all, and the monitor refuses pools that would put more than 250 placement groups on one OSD.
There is no manager daemon: nothing the gateway does needs it (pools are created through the
monitor), and it would add a Python process and seconds to start.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from visionloop.testing.certs import make_pki
from visionloop.testing.ports import free_port

DAEMONS = ("ceph-mon", "ceph-osd", "radosgw")
ACCESS_KEY_ID = "visionloop-tests"
SECRET_ACCESS_KEY = "visionloop-tests-secret"
START_SECONDS = 60.0  # per daemon; a quiet machine needs a few seconds for all three
OSD_STARTS = 3  # an OSD that did not come up is started again (seen once in a while)


def installed() -> bool:
    return all(shutil.which(name) for name in (*DAEMONS, "ceph", "monmaptool", "radosgw-admin"))


class ClusterError(RuntimeError):
    """The cluster did not start; the message ends with the daemons' last log lines."""


@dataclass
class Cluster:
    """A running one-node cluster: its folder, configuration and the S3 endpoint radosgw serves."""

    root: Path
    mon_port: int
    rgw_port: int
    rgw_tls_port: int
    fsid: str = field(default_factory=lambda: str(uuid.uuid4()))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "ceph.conf"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.rgw_port}"

    @property
    def tls_endpoint(self) -> str:
        """The same gateway over https, with a certificate for 127.0.0.1 and localhost from ``ca``."""
        return f"https://127.0.0.1:{self.rgw_tls_port}"

    @property
    def ca(self) -> Path:
        return self.root / "tls" / "ca.pem"

    def settings(self) -> dict[str, str]:
        """The hub's S3 settings (``LoopSettings``' names) for this gateway."""
        return {
            "s3_endpoint": self.endpoint,
            "s3_bucket": "visionloop",
            "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": SECRET_ACCESS_KEY,
        }

    def write_conf(self) -> None:
        root = self.root
        self.conf.write_text(
            f"""[global]
fsid = {self.fsid}
mon host = v2:127.0.0.1:{self.mon_port}
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
# radosgw asks for a secure monitor session by default, which needs cephx
ms mon client mode = crc
run dir = {root}/run
admin socket = {root}/run/$name.asok
log file = {root}/log/$name.log
mon data = {root}/mon/$name
osd data = {root}/osd/$name
rgw data = {root}/rgw/$name
# the machine's disk is not this cluster's to watch: never stop the monitor for it
mon data avail warn = 1
mon data avail crit = 0
osd objectstore = memstore
memstore device bytes = {8 << 30}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
# a one-monitor cluster waits for nobody: commit map changes at once instead of each second
paxos propose interval = 0.05
paxos min wait = 0.01
rgw frontends = beast endpoint=127.0.0.1:{self.rgw_port} ssl_endpoint=127.0.0.1:{self.rgw_tls_port} \
ssl_certificate={root}/tls/server.pem ssl_private_key={root}/tls/server-key.pem
rgw thread pool size = 64
# no lifecycle rules here; its worker sleeps in 5 s steps, which a stop would wait out
rgw enable lc threads = false
"""
        )
        for folder in ("run", "log", "mon/mon.a", "osd/osd.0", "rgw/client.rgw"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        make_pki(root / "tls")

    def run(self, *args: str, timeout: float = 60.0) -> str:
        """A ceph command-line tool against this cluster; its standard output."""
        done = subprocess.run(
            [args[0], "-c", str(self.conf), *args[1:]], capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise ClusterError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}{self.logs()}")
        return done.stdout

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """A daemon in the foreground (so this process owns it); its output goes to its log file."""
        stderr = (self.root / "log" / f"{name}.stderr").open("ab")
        proc = subprocess.Popen(
            [name, "-f", "-c", str(self.conf), *args],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,  # a Ctrl-C in the test run reaches the daemons through stop() only
        )
        stderr.close()
        self.processes[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.processes.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)

    def stop_all(self) -> None:
        for name in reversed(DAEMONS):  # the gateway first: the OSD and monitor it talks to stay up for it
            self.stop(name)

    def wait(self, name: str, ready: Callable[[], bool], seconds: float = START_SECONDS) -> None:
        """Until ``ready()``; fails at once when the daemon exits, and after ``seconds``."""
        deadline = time.monotonic() + seconds
        proc = self.processes[name]
        while not ready():
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode} while starting{self.logs()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} was not ready after {seconds:g} s{self.logs()}")
            time.sleep(0.1)

    def mon_answers(self) -> bool:
        try:
            self.run("ceph", "--connect-timeout=2", "mon", "stat", timeout=10)
        except (ClusterError, subprocess.TimeoutExpired):
            return False
        return True

    def osd_up(self) -> bool:
        stat = json.loads(self.run("ceph", "osd", "stat", "--format=json", timeout=30))
        return int(stat.get("num_up_osds", 0)) == 1

    def gateway_answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint, timeout=2):
                return True
        except urllib.error.HTTPError:  # an S3 error answer: the gateway is serving
            return True
        except OSError:
            return False

    def logs(self, lines: int = 15) -> str:
        tails = []
        for path in sorted((self.root / "log").glob("*")):
            text = path.read_text(errors="replace").strip().splitlines()[-lines:]
            if text:
                tails.append(f"--- {path.name}\n" + "\n".join(text))
        return ("\n" + "\n".join(tails)) if tails else ""

    def boot(self) -> None:
        """Create the cluster, start its daemons in order, and the S3 user the tests sign with."""
        self.write_conf()
        monmap = self.root / "monmap"
        self.run(
            "monmaptool", "--create", "--fsid", self.fsid, "--addv", "a", f"[v2:127.0.0.1:{self.mon_port}]", str(monmap)
        )
        self.run("ceph-mon", "--mkfs", "-i", "a", "--monmap", str(monmap))
        self.start("ceph-mon", "-i", "a")
        self.wait("ceph-mon", self.mon_answers)
        self.run("ceph", "osd", "create")  # the first OSD: id 0
        self.run("ceph-osd", "-i", "0", "--mkfs")
        for attempt in range(1, OSD_STARTS + 1):
            self.start("ceph-osd", "-i", "0")
            try:
                self.wait("ceph-osd", self.osd_up)
                break
            except ClusterError:
                self.stop("ceph-osd")
                if attempt == OSD_STARTS:
                    raise
        self.run(
            "radosgw-admin",
            "user",
            "create",
            "--uid=visionloop",
            "--display-name=VisionLoop tests",
            f"--access-key={ACCESS_KEY_ID}",
            f"--secret={SECRET_ACCESS_KEY}",
            timeout=120,
        )
        self.start("radosgw", "-n", "client.rgw")
        self.wait("radosgw", self.gateway_answers)


@contextmanager
def radosgw_cluster() -> Iterator[Cluster]:
    """Start a one-node cluster with radosgw in a temporary folder; stop it and remove the folder after.

    A start that fails (a port taken between choosing and binding it, a daemon that died) is tried
    once more from scratch on other ports.
    """
    if not installed():
        raise RuntimeError(
            "Ceph's radosgw is not installed; run scripts/bootstrap (apt-get install radosgw ceph-mon ceph-osd), "
            "or set VISIONLOOP_TEST_S3=moto for a quick run on moto"
        )
    for attempt in (1, 2):
        with ExitStack() as stack:
            root = Path(tempfile.mkdtemp(prefix="visionloop-ceph-"))
            stack.callback(shutil.rmtree, root, ignore_errors=True)
            cluster = Cluster(root, mon_port=free_port(), rgw_port=free_port(), rgw_tls_port=free_port())
            stack.callback(cluster.stop_all)
            try:
                cluster.boot()
            except ClusterError:
                if attempt == 2:
                    raise
                continue
            yield cluster
            return
