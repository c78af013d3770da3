"""The Ray executor's settings, its CLI flags, the install hint without Ray, and a search on a Ray instance of this
process (real Ray, real table) that gives the local executor's records."""
from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli
from llmnas_local.evaluators.ray_executor import INSTALL_HINT, ExecutorConfig, import_ray, resolve_device


def test_executor_config_is_checked():
    assert ExecutorConfig.from_mapping(None) == ExecutorConfig()
    assert ExecutorConfig.from_mapping("ray").kind == "ray"
    cfg = ExecutorConfig.from_mapping({"kind": "ray", "address": "auto", "gpus_per_trial": 0.25})
    assert (cfg.address, cfg.gpus_per_trial, cfg.cpus_per_trial) == ("auto", 0.25, 1.0)
    for bad, match in [({"kind": "dask"}, "executor must be one of local, ray"),
                       ({"kind": "ray", "cpus_per_trial": 0}, "cpus_per_trial must be a positive"),
                       ({"kind": "ray", "gpus_per_trial": -1}, "gpus_per_trial must be a number"),
                       ({"kind": "ray", "gpus_per_trial": 1.5}, "whole number"),
                       ({"kind": "local", "address": "auto"}, "are for the ray executor"),
                       ({"kind": "ray", "nodes": 2}, "unknown key")]:
        with pytest.raises(ValueError, match=match):
            ExecutorConfig.from_mapping(bad)


def test_the_device_is_where_trials_train_not_the_driver():
    ray_cpu, ray_gpu = ExecutorConfig("ray"), ExecutorConfig("ray", gpus_per_trial=0.5)
    assert resolve_device("auto", ray_cpu) == "cpu"
    assert resolve_device("auto", ray_gpu) == "cuda"
    assert resolve_device("cpu", ray_gpu) == "cpu"
    with pytest.raises(ValueError, match="--gpus-per-trial"):
        resolve_device("cuda", ray_cpu)


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)        # import ray now raises ImportError
    with pytest.raises(ValueError, match="pip install 'llmnas_local\\[ray\\]'"):
        import_ray()
    result = CliRunner().invoke(cli, ["search", "--space", "nb201", "--table", str(tmp_path / "t.csv"),
                                      "--executor", "ray", "--store", str(tmp_path / "s"), "-q"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines()[-1] == f"Error: {INSTALL_HINT}"


def test_ray_flags_need_the_ray_executor(tmp_path):
    result = CliRunner().invoke(cli, ["search", "--space", "nb201", "--table", str(tmp_path / "t.csv"),
                                      "--gpus-per-trial", "0.5", "--store", str(tmp_path / "s"), "-q"])
    assert result.exit_code == 2
    assert "--gpus-per-trial is for --executor ray" in result.output


@pytest.mark.slow
def test_a_search_on_a_local_ray_instance_is_the_local_search(nb201_csv, tmp_path):
    pytest.importorskip("ray")
    from llmnas_local.dsl import get_space
    from llmnas_local.evaluators import create_evaluator
    from llmnas_local.proposers import create_proposer
    from llmnas_local.search import Search
    from llmnas_local.store import LmdbStore

    space = get_space("nb201-cells")
    local = create_evaluator(space, table=str(nb201_csv))
    remote = create_evaluator(space, table=str(nb201_csv), executor="ray")
    try:
        assert remote.recipe_hash() == local.recipe_hash() and remote.name == local.name
        assert remote.columns == local.columns and remote.slots() >= 1
        out = []
        for ev, name in ((local, "local"), (remote, "ray")):
            with LmdbStore(tmp_path / name) as store:
                search = Search(space, create_proposer("evolution", population=5, tournament=2), ev, store, seed=7)
                search.run(20, workers=1)
                out.append([(t.canonical, t.status, t.metrics) for t in store.trials(search.run_id)])
        assert out[0] == out[1] and len(out[0]) >= 20
        assert listening_of_descendants() and all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:"))
                                                  for a in listening_of_descendants())
    finally:
        remote.close()
        import ray

        ray.shutdown()


def test_a_grid_names_its_executor_and_workers(nb201_csv):
    from llmnas_local.bench.config import GridError, config_from_dict

    raw = {"name": "g", "entries": [{"name": "random"}], "space": {"name": "nb201", "table": str(nb201_csv)}}
    cfg = config_from_dict({**raw, "workers": 2, "executor": {"kind": "ray", "gpus_per_trial": 0.5}})
    assert (cfg.workers, cfg.executor) == (2, {"kind": "ray", "gpus_per_trial": 0.5})
    assert cfg.to_json()["executor"] == {"kind": "ray", "gpus_per_trial": 0.5}
    assert config_from_dict({**raw, "executor": "ray"}).executor == {"kind": "ray"}
    for bad, match in [({"workers": 0}, "workers must be a positive integer"),
                       ({"executor": {"kind": "ray", "gpus": 1}}, "executor: executor: unknown key"),
                       ({"executor": 3}, "executor: expected a kind or a table")]:
        with pytest.raises(GridError, match=match):
            config_from_dict({**raw, **bad})


@pytest.mark.slow
def test_a_grid_on_ray_gives_the_local_grid(nb201_csv, tmp_path):
    pytest.importorskip("ray")
    from llmnas_local.bench.config import config_from_dict
    from llmnas_local.bench.runner import BenchRunner

    raw = {"name": "g", "seeds": 2, "budgets": [5, 10], "entries": [{"name": "random"}, {"name": "evolution",
           "settings": {"population": 4, "tournament": 2}}], "space": {"name": "nb201", "table": str(nb201_csv)}}
    try:
        local = BenchRunner(config_from_dict(raw), tmp_path / "local").run()
        remote = BenchRunner(config_from_dict({**raw, "executor": "ray"}), tmp_path / "ray").run()
    finally:
        import ray

        ray.shutdown()
    assert len(local) == 4
    assert [(r.run_id, r.curve_test, r.counts) for r in remote] == [(r.run_id, r.curve_test, r.counts) for r in local]


@pytest.mark.slow
def test_a_node_whose_data_differ_stops_the_search(nb201_csv):
    pytest.importorskip("ray")
    import os

    from llmnas_local.dsl import get_space
    from llmnas_local.evaluators.ray_executor import create_ray_evaluator
    from llmnas_local.evaluators.tabular import TabularEvaluator

    driver = os.getpid()

    def create(space, *, table, preset, **_):     # the node reads another column than the driver: another recipe
        return TabularEvaluator(table, preset=preset if os.getpid() == driver else "cifar100")

    space = get_space("nb201-cells")
    ev = create_ray_evaluator(create, space, "ray", table=str(nb201_csv), preset="cifar10")
    try:
        cell = space.parse(space.sample(__import__("random").Random(0)))
        with pytest.raises(ValueError, match="evaluates under another recipe than the driver") as raised:
            ev.evaluate(space, cell)
        assert "\n" not in str(raised.value)          # the node's own message, not Ray's remote traceback
    finally:
        ev.close()
        import ray

        ray.shutdown()


def listening_of_descendants() -> list[str]:
    """Listening TCP addresses of this process's descendants (the Ray instance it started), from ``ss -ltnp``."""
    import os
    import re
    import subprocess
    from pathlib import Path

    parent = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    ours, grew = {os.getpid()}, True
    while grew:
        new = {p for p, pp in parent.items() if pp in ours} - ours
        ours |= new
        grew = bool(new)
    ours.discard(os.getpid())
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines()
            if any(int(pid) in ours for pid in re.findall(r"pid=(\d+)", line))]


def test_no_head_at_the_address_is_one_line(nb201_csv, tmp_path):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as s:              # a loopback port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(cli, ["search", "--space", "nb201", "--table", str(nb201_csv), "--executor", "ray",
                                      "--ray-address", f"127.0.0.1:{port}", "--store", str(tmp_path / "s"), "-q"])
    assert result.exit_code == 2, result.output
    assert f"--ray-address 127.0.0.1:{port}: no Ray head node answers there" in result.output
    assert not (tmp_path / "s").exists()
