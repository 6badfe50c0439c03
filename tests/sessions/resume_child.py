"""Fresh-process half of the continuation test: resume a bundle and train to the budget.

    python resume_child.py BUNDLE OUT NUM_WORKERS PERSISTENT TOTAL_STEPS
"""

from __future__ import annotations

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))  # tests/, for sessions.helpers

import torch  # noqa: E402

from onthefly import Trainer  # noqa: E402
from onthefly.sessions import Sessions  # noqa: E402
from sessions.helpers import setup  # noqa: E402


def main() -> None:
    bundle, out, workers, persistent, total = sys.argv[1:6]
    model, opt, loss, loader, sched, val = setup(int(workers), persistent=persistent == "1")
    torch.manual_seed(999)  # a different RNG state: the bundle's must win
    sessions = Sessions()
    Trainer("t", "resumed", max_steps=int(total), port=0, verbose=False, hooks=[sessions]).fit(
        model, opt, loss, loader, val_loader=val, scheduler=sched, resume_from=bundle)
    torch.save(model.state_dict(), out)
    info = sessions.info()
    pathlib.Path(out + ".json").write_text(json.dumps({
        "metric_steps": info.metric_steps, "lineage": info.lineage, "sample_rows": info.sample_loss_rows}))


if __name__ == "__main__":
    main()
