"""``dxp``: ML-Dash's code starts it by hand (``with dxp.run:`` / ``dxp.run.start()``), its docs use it
straight away; both work with ours. (ML-Dash's own dxp is remote-only, so only ours runs here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from onthefly.tracking.store import LocalStore

SCRIPTS = {
    "docs": """
        from onthefly.tracking.auto_start import dxp
        dxp.params.set(lr=0.1)
        dxp.metrics("train").log(loss=0.5, step=0)
        dxp.log("hello")
        print(dxp.run.prefix)
    """,
    "with": """
        from onthefly.tracking.auto_start import dxp
        with dxp.run:
            dxp.params.set(lr=0.1)
            dxp.metrics("train").log(loss=0.5, step=0)
        print(dxp.run.prefix)
    """,
    "start": """
        from onthefly.tracking.auto_start import dxp
        dxp.run.start()
        dxp.params.set(lr=0.1)
        print(dxp.run.prefix)
    """,
}


def _run(tmp_path, code, **env):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(code))
    full = {**os.environ, "ONTHEFLY_DASH_ROOT": str(tmp_path / "d"), "USER": "carol", **env}
    for name in ("ONTHEFLY_USER", "ML_DASH_USER", "ML_DASH_PREFIX", "ONTHEFLY_PREFIX", "ONTHEFLY_DASH_URL"):
        full.pop(name, None)
    full.update(env)
    out = subprocess.run([sys.executable, str(script)], env=full, cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_dxp_started_by_use_by_with_or_by_start(tmp_path):
    for style, code in SCRIPTS.items():
        (tmp_path / "pyproject.toml").write_text("")
        prefix = _run(tmp_path, code)
        owner, project, year, day, *rest = prefix.split("/")
        assert (owner, project) == ("carol", "scratch") and rest[0] == "train", (style, prefix)
        store = LocalStore(tmp_path / "d")
        assert store.get_params(prefix) == {"lr": 0.1}
        assert store.get_experiment(prefix).status.value == "COMPLETED"  # closed at exit or by `with`


def test_dxp_prefix_from_ml_dash_prefix(tmp_path):
    prefix = _run(tmp_path, SCRIPTS["docs"], ML_DASH_PREFIX="carol/fixed/run-1")
    assert prefix == "carol/fixed/run-1"
    assert json.dumps(LocalStore(tmp_path / "d").get_params(prefix)) == '{"lr": 0.1}'
