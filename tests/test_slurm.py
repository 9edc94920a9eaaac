"""The tiny workflow through ``snakemake --profile profiles/slurm`` on a real one-node SLURM cluster.

The test starts munged, slurmctld and slurmd itself (:mod:`tests.helpers.slurm_cluster`), with the
partitions the profile names, and runs the profile as the README's cluster section does, with one line added
to a copy of it, as the README says to give pretraining its GPUs: one GPU for pretraining (the tiny run trains
on the CPU, where the rule declares none; config/mimic.yaml's cuda device declares one). On the command line
``--set-resources`` would replace the profile's whole ``set-resources``, partitions included. The command
line adds only faster status checks. While the run goes, the pretraining job is
cancelled with ``scancel`` once it trains. Then: every job that is not a local rule went through SLURM (its
id in Snakemake's log and in ``squeue``, in the profile's partition, a GPU for pretraining alone), the
cancelled pretraining was submitted again as the profile's retries say and resumed from its checkpoint, and
every data artifact has the bytes of the local tiny run's (``tiny_run``), the pretrained weights included.

It runs where the tests run as root, and fails (never skips) there when SLURM is not installed: ``.ci/run``
installs it. As another user it is skipped: daemons, /etc/slurm and munge need root.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers.artifacts import artifact_differences
from tests.helpers.slurm_cluster import PACKAGES, Cluster, missing_binaries, slurm_cluster
from tests.helpers.workflow import ROOT, TINY

pytestmark = pytest.mark.slurm

PROFILE = ROOT / "profiles" / "slurm"
# the test's only additions to the profile: the first status check after 1 s, not 40, and checks every second
FAST_STATUS = ("--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1")
GPUS = 1  # pretraining's request, as its rule declares it on cuda: the cluster's node has a (fake) GPU
RUN_TIMEOUT = 1800  # seconds for the whole workflow: 8-12 minutes on 2 busy cores, mostly the plugin's polling
CANCELLED_RULE = "pretrain"
TRAINING = "trainable parameters"  # pretrain.log's line once the model is built and SIGTERM writes a checkpoint
EMBEDDED_LOG = re.compile(r"^Logfile .*:\n(=+)\n.*?^\1\n", re.MULTILINE | re.DOTALL)  # a log, between equal rules
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")


@dataclass(frozen=True)
class SlurmRun:
    """The workdir, Snakemake's output, the SLURM job id cancelled and every job ``squeue`` knew at the end."""

    workdir: Path
    log: str
    cancelled: str
    jobs: list[dict[str, str]]


def _profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def _profile_with_a_gpu(directory: Path) -> Path:
    """A copy of the profile whose ``set-resources`` gives pretraining ``GPUS`` GPUs."""
    profile = _profile()
    profile["set-resources"][CANCELLED_RULE]["gpu"] = GPUS
    directory.mkdir()
    (directory / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory


def _partition(profile: dict, rule: str) -> str:
    default = profile["default-resources"]["slurm_partition"]
    return profile.get("set-resources", {}).get(rule, {}).get("slurm_partition", default)


def _partitions(profile: dict) -> list[str]:
    """The profile's partitions, its default first."""
    names = [profile["default-resources"]["slurm_partition"]]
    names += [r["slurm_partition"] for r in profile.get("set-resources", {}).values() if "slurm_partition" in r]
    return list(dict.fromkeys(names))


def _cancel_when_training(cluster: Cluster, workdir: Path, run: subprocess.Popen) -> str:
    """``scancel`` of the pretraining job once its log shows training; the SLURM job id."""
    log = workdir / "logs" / f"{CANCELLED_RULE}.log"
    while run.poll() is None:
        running = [j for j in cluster.jobs() if j["comment"] == f"rule_{CANCELLED_RULE}" and j["state"] == "RUNNING"]
        if running and log.is_file() and TRAINING in log.read_text():
            subprocess.run(["scancel", running[0]["id"]], check=True, timeout=30)
            return running[0]["id"]
        time.sleep(0.2)
    raise AssertionError(f"snakemake ended (rc {run.returncode}) before the {CANCELLED_RULE} job trained")


@pytest.fixture(scope="module")
def slurm_run(tmp_path_factory) -> SlurmRun:
    if os.geteuid() != 0:
        pytest.skip("the SLURM test starts its daemons as root")
    missing = missing_binaries()
    if missing:
        pytest.fail(f"SLURM is not installed (no {', '.join(missing)}): apt-get install {' '.join(PACKAGES)}")
    base = tmp_path_factory.mktemp("slurm")
    workdir, output = base / "work", base / "snakemake.log"
    workdir.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory", str(workdir)]
    cmd += ["--configfile", str(TINY), "--profile", str(_profile_with_a_gpu(base / "profile")), *FAST_STATUS]
    with slurm_cluster(_partitions(_profile()), base / "cluster") as cluster, output.open("w") as out:
        run = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir)
        try:
            cancelled = _cancel_when_training(cluster, workdir, run)
            run.wait(timeout=RUN_TIMEOUT)
        except BaseException:
            run.kill()
            run.wait()
            raise
        jobs = cluster.jobs()
    log = output.read_text()
    assert run.returncode == 0, f"snakemake --profile (a copy of {PROFILE}) failed:\n{log[-6000:]}"
    return SlurmRun(workdir, log, cancelled, jobs)


def _own_lines(log: str) -> str:
    """Snakemake's log without the logs it prints of failed jobs (a SLURM job's log holds the job step's own
    Snakemake run, where the job's rule shows as a ``localrule``)."""
    return EMBEDDED_LOG.sub("", log)


def _job_counts(log: str) -> Counter:
    """The jobs Snakemake planned, per rule, from the "Job stats" table its log opens with."""
    table = log.split("Job stats:", 1)[1].split("\n\n", 1)[0].splitlines()[3:]
    counts = Counter({name: int(n) for name, n in (line.split() for line in table)})
    del counts["total"]
    return counts


def _submitted(log: str) -> dict[str, tuple[str, str]]:
    """SLURM job id -> (Snakemake job id, rule), from the log's submission lines and SLURM log paths."""
    submissions = SUBMITTED.findall(log)
    return {slurm: (job, re.search(r"slurm_logs/rule_([^/]+)/", path)[1]) for job, slurm, path in submissions}


def test_every_job_that_is_not_local_ran_as_a_slurm_job(slurm_run: SlurmRun):
    planned, profile = _job_counts(slurm_run.log), _profile()
    local = set(re.findall(r"^localrule (\w+):", _own_lines(slurm_run.log), re.M))
    submitted = _submitted(slurm_run.log)
    jobs_per_rule = Counter(rule for _, rule in set(submitted.values()))
    remote = {rule: n for rule, n in planned.items() if rule not in local}
    assert remote, "no rule ran on SLURM"
    assert dict(jobs_per_rule) == remote, f"Snakemake jobs submitted to SLURM {dict(jobs_per_rule)}, planned {remote}"

    on_slurm = {job["id"]: job for job in slurm_run.jobs}
    assert set(on_slurm) == set(submitted), f"squeue's jobs {sorted(on_slurm)}, Snakemake's {sorted(submitted)}"
    for slurm_id, (_, rule) in submitted.items():
        job = on_slurm[slurm_id]
        assert job["comment"].startswith(f"rule_{rule}"), job
        assert job["partition"] == _partition(profile, rule), job
        expected = "CANCELLED" if slurm_id == slurm_run.cancelled else "COMPLETED"
        assert job["state"] == expected, job


def test_pretraining_alone_holds_a_gpu(slurm_run: SlurmRun):
    pretraining = [job for job in slurm_run.jobs if job["comment"] == f"rule_{CANCELLED_RULE}"]
    assert pretraining and all(job["tres_per_job"] == f"gres:gpu:{GPUS}" for job in pretraining), pretraining
    others = [job for job in slurm_run.jobs if job["comment"] != f"rule_{CANCELLED_RULE}"]
    assert others and not any("gpu" in job["tres_per_job"] for job in others), others


def test_a_cancelled_pretraining_is_retried_and_resumes(slurm_run: SlurmRun):
    submitted = _submitted(slurm_run.log)
    pretraining = sorted((int(slurm), job) for slurm, (job, rule) in submitted.items() if rule == CANCELLED_RULE)
    retries = _profile()["retries"]
    assert 2 <= len(pretraining) <= 1 + retries, pretraining
    assert str(pretraining[0][0]) == slurm_run.cancelled
    assert len({job for _, job in pretraining}) == 1, "the retry is another submission of the same Snakemake job"
    assert f"SLURM-job '{slurm_run.cancelled}' failed, SLURM status is: 'CANCELLED'" in slurm_run.log
    assert "Trying to restart job" in slurm_run.log
    pretrain_log = (slurm_run.workdir / "logs" / f"{CANCELLED_RULE}.log").read_text()
    assert re.search(r"resuming from \S+resume\.pt at epoch 0, batch \d+", pretrain_log), pretrain_log


def test_the_outputs_equal_a_local_run(slurm_run: SlurmRun, request: pytest.FixtureRequest):
    tiny_run = request.getfixturevalue("tiny_run")  # not an argument: a session fixture is built first, even to skip
    differences = artifact_differences(tiny_run, slurm_run.workdir)
    assert not differences, "the SLURM run's outputs differ from the local run's:\n" + "\n".join(differences)
