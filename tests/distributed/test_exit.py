"""A distributed job's garbage is collected before the interpreter finalizes (onthefly/distributed/exit.py):
an FSDP2 model lives in reference cycles, and the gloo process group its mesh holds must not be freed
during finalization, when a gloo worker dropping its last Work would abort the process (SIGABRT)."""

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
        assert report["alive"] is False, f"rank {rank}: the model (and its process group) outlived the exit handlers"
