"""A one-node SLURM cluster on this machine, started and stopped by the test that needs it (as root).

munged, slurmctld and slurmd run as daemons without systemd; the configuration goes to /etc/slurm, the one
place every SLURM client finds it (the executor plugin's job step clears ``SLURM_*`` variables, so
``SLURM_CONF`` elsewhere breaks ``srun`` inside a job). The state, pid and log files lie in ``state``. On
leaving, every job is cancelled, the daemons are stopped by their pid files and the configuration is
removed: with a configuration and no controller, every later ``snakemake`` call waits on the plugin's
``scontrol show config``. Debian's packages: ``apt-get install slurmctld slurmd slurm-client munge``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template

from tests.helpers.workflow import ROOT

CONF_DIR = Path("/etc/slurm")
TEMPLATES = ROOT / "tests" / "data" / "slurm"
MARK = "# written by tests/helpers/slurm_cluster.py; state: "
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("munge", "unmunge", "munged", "mungekey", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_PID = Path("/run/munge/munged.pid")
LOCK = Path(tempfile.gettempdir()) / "imitate-slurm-cluster.lock"


def missing_binaries() -> list[str]:
    """The SLURM and munge programs the cluster needs that are not on PATH."""
    return [name for name in BINARIES if shutil.which(name) is None]


def _run(*cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _wait(condition: Callable[[], bool], timeout: float, what: str, state: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            logs = "\n".join(f"== {p}\n{p.read_text()[-2000:]}" for p in sorted(state.glob("*.log")))
            raise RuntimeError(f"SLURM test cluster: {what} not reached in {timeout:.0f} s\n{logs}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    """Running and not a zombie (a daemon's parent may reap it late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _stop_by_pid_files(pid_files: Sequence[Path], timeout: float = 15) -> None:
    """SIGTERM to every pid file's process, SIGKILL to any still alive after ``timeout``; the files removed."""
    pids = []
    for pid_file in pid_files:
        if pid_file.is_file() and pid_file.read_text().strip().isdigit():
            pid = int(pid_file.read_text())
            if _alive(pid):
                os.kill(pid, 15)
                pids.append(pid)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in filter(_alive, pids):
        os.kill(pid, 9)
    for pid_file in pid_files:
        pid_file.unlink(missing_ok=True)


def _munge_works() -> bool:
    credential = _run("munge", "-n", timeout=5)
    if credential.returncode != 0:
        return False
    decoded = subprocess.run(["unmunge"], input=credential.stdout, capture_output=True, text=True, timeout=5)
    return decoded.returncode == 0


def _start_munge() -> bool:
    """munged with a key of its own, unless one already answers; whether this call started it."""
    if _munge_works():
        return False
    for folder in (Path("/run/munge"), Path("/var/log/munge"), Path("/var/lib/munge"), MUNGE_KEY.parent):
        folder.mkdir(parents=True, exist_ok=True)
        shutil.chown(folder, "munge", "munge")
    if not MUNGE_KEY.is_file():
        subprocess.run(["mungekey", "--create", f"--keyfile={MUNGE_KEY}"], check=True, timeout=30)
    shutil.chown(MUNGE_KEY, "munge", "munge")
    MUNGE_KEY.chmod(0o400)
    subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, timeout=30)
    return True


def _node_state(host: str) -> str:
    return _run("sinfo", "-h", "-n", host, "-o", "%T").stdout.strip()


def _leftover_state() -> Path | None:
    """The state folder of a test cluster whose configuration is still in /etc/slurm; refuses a real one."""
    conf = CONF_DIR / "slurm.conf"
    if not conf.exists():
        return None
    first = conf.read_text().splitlines()[:1]
    if not first or not first[0].startswith(MARK):
        raise RuntimeError(f"{conf} exists and was not written by the tests: this machine has a SLURM of its own")
    return Path(first[0].removeprefix(MARK))


def _write_confs(state: Path, host: str, partitions: Sequence[str], cpus: int, memory_mb: int) -> None:
    lines = [f"PartitionName={name} Nodes=ALL MaxTime=INFINITE State=UP" for name in partitions]
    lines[0] += " Default=YES"
    fields = {"mark": f"{MARK}{state}", "host": host, "state": state, "cpus": cpus, "memory_mb": memory_mb}
    CONF_DIR.mkdir(parents=True, exist_ok=True)
    for name, extra in (("slurm.conf", {"partitions": "\n".join(lines)}), ("gres.conf", {})):
        text = Template((TEMPLATES / f"{name}.in").read_text()).substitute(fields, **extra)
        (CONF_DIR / name).write_text(text)


def _stop(state: Path, munge_started: bool) -> None:
    if (state / "slurmctld.pid").is_file() and "UP" in _run("scontrol", "ping", timeout=10).stdout:
        _run("scancel", "--full", "--user", "root", timeout=10)
        # a job's processes end before slurmd does: none outlives the cluster
        for _ in range(100):
            if not _run("squeue", "-h", "--states=RUNNING,COMPLETING", timeout=10).stdout.strip():
                break
            time.sleep(0.2)
    _stop_by_pid_files([state / "slurmd.pid", state / "slurmctld.pid"])
    if munge_started:
        _stop_by_pid_files([MUNGE_PID])
    for name in ("slurm.conf", "gres.conf"):
        (CONF_DIR / name).unlink(missing_ok=True)


@dataclass(frozen=True)
class Cluster:
    """The running cluster: its node's name and the folder of its state and daemon logs."""

    host: str
    state: Path

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller knows of, finished ones included: id, comment, state, partition and the
        job's TRES request (``gres:gpu:1`` for ``--gpus=1``, ``N/A`` for none)."""
        fields = ("id", "comment", "state", "partition", "tres_per_job")
        out = _run("squeue", "-h", "--states=all", "-O", "JobID:0|,Comment:0|,State:0|,Partition:0|,tres-per-job:0")
        if out.returncode != 0:
            raise RuntimeError(f"squeue failed: {out.stderr}")
        return [dict(zip(fields, line.split("|"), strict=True)) for line in out.stdout.splitlines()]


@contextmanager
def slurm_cluster(partitions: Sequence[str], state: Path, cpus: int = 8, memory_mb: int = 256_000) -> Iterator[Cluster]:
    """A running one-node cluster with these partitions (the first the default) and one (fake) GPU.

    The node is declared with at least ``cpus`` CPUs and ``memory_mb`` of memory whatever the machine has, so
    that the requests of a real profile are scheduled; nothing binds or limits a job's processes.
    """
    state.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname().split(".")[0]
    with LOCK.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another SLURM test cluster runs on this machine (it holds {LOCK})") from None
        leftover = _leftover_state()
        if leftover is not None:
            _stop(leftover, munge_started=False)
        munge_started = False
        try:
            _write_confs(state, host, partitions, max(cpus, os.cpu_count() or 1), memory_mb)
            munge_started = _start_munge()
            _wait(_munge_works, 10, "munged answering", state)
            subprocess.run(["slurmctld", "-c"], check=True, timeout=30)
            _wait(lambda: "UP" in _run("scontrol", "ping").stdout, 30, "slurmctld up", state)
            subprocess.run(["slurmd"], check=True, timeout=30)
            _wait(lambda: _node_state(host) == "idle", 60, f"node {host} idle", state)
            yield Cluster(host=host, state=state)
        finally:
            _stop(state, munge_started)
