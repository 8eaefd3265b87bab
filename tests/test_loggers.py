"""logger=mlflow and logger=wandb (optional extras): real CLI sweeps write their records locally, read
back through each library's own reader; without the extra, the run is refused before it writes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, assert_ok, fast_overrides, run_cli, summaries
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import OmegaConf

from ablate.run.extras import missing_extras
from ablate.run.results import hparam_metrics, select_hparams
from ablate.run.tracking import folder_names

NORMS = ("batch", "layer")


@pytest.fixture
def offline_env(tmp_path, monkeypatch) -> dict[str, str]:
    """No network, and every file of the libraries under tmp_path (home included), for the run and
    for this process, which reads the records back."""
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "WANDB_MODE": "offline",
        "WANDB_ERROR_REPORTING": "false",
        "WANDB_CONFIG_DIR": str(home / "wandb-config"),
        "WANDB_CACHE_DIR": str(home / "wandb-cache"),
        "WANDB_DATA_DIR": str(home / "wandb-data"),
        "WANDB_ARTIFACT_DIR": str(home / "wandb-artifacts"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "NO_PROXY": "*",
        "HTTPS_PROXY": "http://127.0.0.1:9",  # a request that got out would fail, not leave
        "HTTP_PROXY": "http://127.0.0.1:9",
        "MLFLOW_ALLOW_FILE_STORE": "true",  # what ablate.run.tracking sets for a file store
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def sweep(logger: str, data_root: Path, tmp_path: Path, env: dict) -> tuple[Path, dict[str, dict]]:
    """A 2-run sweep (norm=batch,layer) with the logger; its folder and each run's summary.json."""
    folder = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        f"logger={logger}",
        f"norm={','.join(NORMS)}",
        *[o for o in fast_overrides(data_root, tmp_path) if not o.startswith("trainer.max_epochs")],
        "trainer.max_epochs=2",  # two validations: a curve, not a point
        "data.train_subset=128",
        f"hydra.sweep.dir={folder}",
        env=env,
    )
    assert_ok(proc)
    found = summaries(folder)
    assert sorted(found) == [f"norm={n}" for n in NORMS]
    assert all(s["status"] == "completed" for s in found.values())
    return folder, found


def records_at_home(tmp_path: Path, *patterns: str) -> list[Path]:
    """Run records (or telemetry) the library left in the (test's) home: they belong in the run
    folder. wandb-core's own debug logs go to WANDB_CACHE_DIR (~/.cache/wandb by default)."""
    return [p for pattern in patterns for p in (tmp_path / "home").rglob(pattern)]


def expected(summary: dict) -> tuple[dict, dict]:
    """The TensorBoard HParams entry of a run: its columns (group choices, seed...) and metrics."""
    cfg = OmegaConf.create(summary["config"])
    params = select_hparams(cfg, summary["choices"], summary["swept"])
    target = OmegaConf.select(cfg, "report.target_acc", default=None)
    metrics = hparam_metrics(summary["metrics"], summary["status"], summary["history"], target)
    assert {"norm", "model", "seed"} <= set(params) and "test/acc" in metrics
    return params, metrics


def _plain(params: dict) -> dict:
    """Whole numbers as integers, as the loggers get them (seed 3, not 3.0)."""
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in params.items()}


def test_mlflow_sweep_is_one_experiment_with_the_hparams_columns(data_root, tmp_path, offline_env):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    folder, found = sweep("mlflow", data_root, tmp_path, offline_env)
    store = tmp_path / "logs" / "mlruns"
    client = MlflowClient(f"file:{store}")
    group, _ = folder_names(str(folder / "norm=batch"), str(tmp_path / "logs"))
    experiment = client.get_experiment_by_name(group)
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(found)  # both runs: mlflow ui compares
    for run in runs:
        params, metrics = expected(found[run.info.run_name])
        assert run.info.status == "FINISHED"
        assert run.data.params == {k: str(v) for k, v in _plain(params).items()}
        assert run.data.params["norm"] == run.info.run_name.removeprefix("norm=")
        assert {k: run.data.metrics[k] for k in metrics} == pytest.approx(metrics, abs=1e-12)
        val = client.get_metric_history(run.info.run_id, "val/acc")  # scalars during training
        assert len(val) >= 2 and len({m.step for m in val}) == len(val)
    assert not records_at_home(tmp_path, "mlruns", "meta.yaml", "telemetry.json")


def _create(store: str, barrier) -> None:
    from ablate.run.tracking import create_experiment

    barrier.wait()
    create_experiment(f"file:{store}", "multiruns/parallel")


def test_cells_starting_together_make_one_experiment(tmp_path, offline_env):
    """hydra/launcher=joblib: a sweep's cells create its experiment at the same moment."""
    pytest.importorskip("mlflow")
    import multiprocessing

    from mlflow.tracking import MlflowClient

    store, ctx = tmp_path / "logs" / "mlruns", multiprocessing.get_context("fork")
    barrier = ctx.Barrier(4)
    cells = [ctx.Process(target=_create, args=(str(store), barrier)) for _ in range(4)]
    for p in cells:
        p.start()
    for p in cells:
        p.join(120)
    assert [p.exitcode for p in cells] == [0] * 4
    found = MlflowClient(f"file:{store}").search_experiments(
        filter_string="name = 'multiruns/parallel'"
    )
    assert len(found) == 1


# ------------------------------------------------------------------ wandb: the offline run's file
# wandb 0.31 ships no Python reader for its .wandb files (the old wandb.sdk.internal.datastore went
# with the move to wandb-core); `wandb sync` reads them in Go. The framing is LevelDB's log format
# (a 7-byte ":W&B" header, 32 KiB blocks of crc32/length/type chunks), each record one protobuf
# message of wandb's own schema, wandb.proto.wandb_internal_pb2.Record, decoded by wandb's code.

_HEADER, _CHUNK, _BLOCK = struct.Struct("<4sHB"), struct.Struct("<IHB"), 32768
_FULL, _LAST = 1, 4


def wandb_records(path: Path) -> list:
    """Every record of an offline run's run-<id>.wandb, as wandb's protobuf Record messages."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, _ = _HEADER.unpack_from(data)
    assert (ident, magic) == (b":W&B", 0xBEE1)
    out, chunks, i = [], b"", _HEADER.size
    while i + _CHUNK.size <= len(data):
        if _BLOCK - i % _BLOCK < _CHUNK.size:  # a block's tail too short for a chunk is padding
            i += _BLOCK - i % _BLOCK
            continue
        _, length, kind = _CHUNK.unpack_from(data, i)
        chunks += data[i + _CHUNK.size : i + _CHUNK.size + length]
        i += _CHUNK.size + length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunks)
            out.append(record)
            chunks = b""
    return out


def _items(items) -> dict:
    return {"/".join(u.nested_key) or u.key: json.loads(u.value_json) for u in items}


def test_wandb_sweep_writes_one_offline_run_per_cell(data_root, tmp_path, offline_env):
    pytest.importorskip("wandb")
    folder, found = sweep("wandb", data_root, tmp_path, offline_env)
    for cell, summary in found.items():
        (run_file,) = (folder / cell / "wandb").glob("offline-run-*/run-*.wandb")  # one per cell
        records = wandb_records(run_file)
        kinds = [r.WhichOneof("record_type") for r in records]
        (run,) = [r.run for r in records if r.HasField("run")]
        assert (run.display_name, run.project) == (cell, "ablate")
        assert run.run_group == folder_names(str(folder / cell), str(tmp_path / "logs"))[0]
        config, final, history = {}, {}, []
        for r in records:
            if r.HasField("config"):
                config.update({k: v for k, v in _items(r.config.update).items() if k != "_wandb"})
            if r.HasField("summary"):
                final.update(_items(r.summary.update))
            if r.HasField("history"):
                history.append(_items(r.history.item))
        params, metrics = expected(summary)
        assert config == _plain(params)
        assert config["norm"] == cell.removeprefix("norm=")
        assert {k: final[k] for k in metrics} == pytest.approx(metrics, abs=1e-12)
        assert len([h for h in history if "val/acc" in h]) >= 2  # scalars during training
        assert "exit" in kinds  # finished: the next cell of the sweep got a run of its own
    assert not records_at_home(tmp_path, "*.wandb", "offline-run-*", "run-*")


# ------------------------------------------------------------------ without the extra installed
_HIDE = """
import importlib.abc, runpy, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition('.')[0] == {module!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Hide())
sys.argv = ['ablate.train', *sys.argv[1:]]
runpy.run_module('ablate.train', run_name='__main__', alter_sys=True)
"""


@pytest.mark.parametrize(("logger", "multirun"), [("mlflow", False), ("wandb", True)])
def test_a_logger_without_its_extra_is_refused_before_anything_is_written(
    logger, multirun, data_root, tmp_path
):
    run_dir = tmp_path / "out"
    where = f"hydra.sweep.dir={run_dir}" if multirun else f"hydra.run.dir={run_dir}"
    args = ["-m", "seed=0,1"] if multirun else []
    args += [f"logger={logger}", where, *fast_overrides(data_root, tmp_path)]
    proc = subprocess.run(
        [sys.executable, "-c", _HIDE.format(module=logger), *args],
        cwd=REPO,
        env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: logger={logger} needs the {logger} extra, which is not installed: "
        f"make install EXTRAS={logger} (or pip install -e '.[{logger}]')"
    ]
    assert not run_dir.exists() and not (tmp_path / "logs").exists()


def test_missing_extras_reads_the_option_file(monkeypatch):
    """Each logger entry's `_extra_` is checked; entries without one need nothing."""
    import importlib.util

    cfg = OmegaConf.create(
        {
            "logger": {
                "tensorboard": {"_target_": "x.TensorBoardLogger"},
                "mine": {"_target_": "x.Mine", "_extra_": "not_a_module_here"},
                "off": None,
            }
        }
    )
    assert missing_extras(cfg) == [
        "logger=mine needs the not_a_module_here extra, which is not installed: "
        "make install EXTRAS=not_a_module_here (or pip install -e '.[not_a_module_here]')"
    ]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert missing_extras(cfg) == []


_SEGMENT = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="=,+_-"), min_size=1, max_size=12)  # fmt: skip


@given(
    root=st.lists(_SEGMENT, min_size=1, max_size=3), rel=st.lists(_SEGMENT, min_size=1, max_size=3)
)
def test_folder_names_are_the_run_path_under_log_dir(root, rel):
    """The group (experiment) and name put back together are the run's path under log_dir."""
    log_dir = "/nonexistent-ablate-test/" + "/".join(root)
    group, name = folder_names(f"{log_dir}/{'/'.join(rel)}", log_dir)
    assert name == rel[-1]
    assert group == ("/".join(rel[:-1]) or ".")


@pytest.mark.slow  # `mlflow ui` takes a minute to start on 2 busy cores
def test_mlflow_ui_serves_the_store(tmp_path, offline_env):
    """`mlflow ui --backend-store-uri <log_dir>/mlruns` starts (on the project's SQLAlchemy 1.4) and
    serves a run that ablate's logger wrote, with its parameters."""
    pytest.importorskip("mlflow")
    import signal
    import socket
    import time
    import urllib.request

    from ablate.run.tracking import mlflow_logger, record_run

    log_dir = tmp_path / "logs"
    lg = mlflow_logger(str(log_dir / "runs" / "norm=layer"), str(log_dir), tracking_uri=f"file:{log_dir}/mlruns")  # fmt: skip
    record_run(lg, {"norm": "layer", "seed": 3.0}, {"test/acc": 0.5}, 7, "completed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", str(log_dir / "mlruns"), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    body = json.dumps({"experiment_ids": [lg.experiment_id]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    local = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
    found = None
    try:
        deadline = time.monotonic() + 240
        while found is None and server.poll() is None and time.monotonic() < deadline:
            try:
                found = json.loads(local.open(request, timeout=10).read())
            except OSError:
                time.sleep(2)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        output = server.communicate(timeout=60)[0]
    assert found is not None, output[-3000:]
    (run,) = found["runs"]
    assert run["info"]["run_name"] == "norm=layer"
    assert {p["key"]: p["value"] for p in run["data"]["params"]} == {"norm": "layer", "seed": "3"}
