"""Before the interpreter finalizes, a distributed job's garbage is collected and gloo's workers are idle
(onthefly/distributed/exit.py): a gloo worker dropping the script's last Work during finalization aborts
the process (SIGABRT) after a good run."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

WORKER = pathlib.Path(__file__).with_name("exit_worker.py")


def test_an_fsdp_model_dropped_by_the_script_is_collected_before_finalization(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", ONTHEFLY_STORE=str(tmp_path / "store"))
    with open(tmp_path / "job.log", "w") as log:
        rc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             str(WORKER), str(tmp_path)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            timeout=180).returncode
    assert rc == 0, (tmp_path / "job.log").read_text()[-4000:]
    for rank in range(2):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report["alive"] is False, f"rank {rank}: the model outlived onthefly's exit handler"
        assert report["busy_workers"] == 0, f"rank {rank}: a gloo worker was still busy after onthefly's exit handler"
