"""Fixtures: a DDP job of N CPU ranks (gloo), each rank reporting to a JSON file. Launched by torchrun, or
(``separate=True``) as N plain processes rendezvousing through env:// as a hand-made multi-node launch
does: there no agent tears the job down when one rank dies, so a test can kill one and watch rank 0."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys

import pytest

WORKER = pathlib.Path(__file__).with_name("ddp_worker.py")


class Job:
    """``torchrun --standalone --nproc-per-node N ddp_worker.py ARGS`` writing rank reports into ``out``."""

    def __init__(self, out: pathlib.Path, nproc: int, *args: str, separate: bool = False,
                 rank_env: dict[int, dict[str, str]] | None = None) -> None:
        self.out, self.nproc = out, nproc
        self.store_port = 0  # the job's TCPStore (MASTER_PORT), when ``separate``
        out.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", ONTHEFLY_STORE=str(out / "store"))
        self._log = open(out / "job.log", "w")
        self.ranks: list[subprocess.Popen] = []
        if not separate:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                 str(WORKER), *args, str(out)], env=env, stdout=self._log, stderr=subprocess.STDOUT,
                start_new_session=True)  # its own process group: close() ends torchrun's workers with it
            return
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = self.store_port = s.getsockname()[1]
        for rank in range(nproc):
            env_of_rank = dict(env, RANK=str(rank), WORLD_SIZE=str(nproc), LOCAL_RANK=str(rank),
                               MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **(rank_env or {}).get(rank, {}))
            self.ranks.append(subprocess.Popen([sys.executable, str(WORKER), *args, str(out)], env=env_of_rank,
                                               stdout=self._log, stderr=subprocess.STDOUT))
        self.proc = self.ranks[0]

    def log(self) -> str:
        return (self.out / "job.log").read_text()[-4000:]

    def wait(self, timeout: float = 180) -> list[dict]:
        """Wait for the job to end well; every rank's report, by rank."""
        assert self.proc.wait(timeout) == 0, self.log()
        return [json.loads((self.out / f"rank{r}.json").read_text()) for r in range(self.nproc)]

    def close(self) -> None:
        if not self.ranks:  # torchrun: kill its whole group, so no worker outlives a failed test
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.ranks or [self.proc]:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)
        self._log.close()


@pytest.fixture
def ddp_job(tmp_path):
    """Factory: ddp_job(nproc, mode, *args) -> Job (killed at teardown if still running)."""
    jobs: list[Job] = []

    def start(nproc: int, mode: str, *args: str, name: str = "", separate: bool = False,
              rank_env: dict[int, dict[str, str]] | None = None) -> Job:
        """``rank_env``: extra environment per rank (``separate`` jobs only)."""
        job = Job(tmp_path / (name or f"{mode}{len(jobs)}"), nproc, mode, *args, separate=separate, rank_env=rank_env)
        jobs.append(job)
        return job

    yield start
    for job in jobs:
        job.close()
