"""The command line: what the README promises, and one clear line with exit code 2 for bad input."""
from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli

RESNET_CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_dsl_grammar_check_and_sample():
    grammar = run("dsl", "grammar", "nb201")
    assert grammar.exit_code == 0 and "root ::=" in grammar.output
    ok = run("dsl", "check", "nb201", RESNET_CELL)
    assert ok.exit_code == 0
    assert "canonical: |none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|" in ok.output
    assert "params:    0.559386 M" in ok.output  # arch 11472: params_M_c10 (the cell as written is built)
    sample = run("dsl", "sample", "cnn", "-n", 3, "--seed", 0)
    assert sample.exit_code == 0 and len(sample.output.splitlines()) == 3
    assert sample.output == run("dsl", "sample", "cnn", "-n", 3, "--seed", 0).output


@pytest.mark.parametrize("args, message", [
    (("dsl", "check", "nb201", "|nor_conv_3x3~0|+|"), "invalid: at position"),
    (("dsl", "check", "nb201", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"), "rejected:"),
    (("dsl", "check", "nosuch", "x"), "unknown search space 'nosuch'"),
])
def test_bad_dsl_input_is_one_line_and_exit_2(args, message):
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_search_top_show_export_on_the_table(tmp_path, nb201_csv):
    store = tmp_path / "evo"
    r = run("search", "--space", "nb201", "--table", nb201_csv, "--proposer", "evolution", "--budget", 30,
            "--seed", 0, "--store", store, "-q")
    assert r.exit_code == 0, r.output
    assert "30 evaluations" in r.output and "best (by validation): val_acc" in r.output
    again = run("search", "--space", "nb201", "--table", nb201_csv, "--proposer", "evolution", "--budget", 30,
                "--seed", 0, "--store", store, "-q")
    assert "resuming run" in again.output and "30 evaluations" in again.output
    top = run("top", store, "-k", 3)
    summary, header, *rows = top.output.splitlines()
    assert top.exit_code == 0 and "complete 30" in summary and "val_acc" in header and len(rows) == 3
    arch_hash = rows[0].split()[5]
    show = run("show", store, arch_hash)
    assert show.exit_code == 0 and "canonical: |" in show.output
    rows = list(csv.DictReader(io.StringIO(run("export", store, "--format", "csv").output)))
    assert len(rows) >= 30 and {"val_acc", "test_acc", "status"} <= set(rows[0])
    lines = run("export", store, "--format", "jsonl").output.splitlines()
    assert len(lines) == len(rows) and json.loads(lines[0])["run_id"]


@pytest.mark.slow
def test_search_with_the_llm_as_mutation_operator(tmp_path, nb201_csv, smollm2_dir):
    store = tmp_path / "llm-evo"
    r = run("search", "--space", "nb201", "--table", nb201_csv, "--proposer", "llm-evo", "--population", 4,
            "--tournament", 2, "--candidates", 4, "--budget", 8, "--store", store, "-q")
    assert r.exit_code == 0, r.output
    assert "8 evaluations" in r.output
    trials = [json.loads(line) for line in run("export", store).output.splitlines()]
    bred = [t for t in trials if t["llm"]]
    assert bred and all(t["parent_hash"] and "smollm2" in t["llm"]["model"] for t in bred)
    assert all(t["status"] in ("complete", "duplicate", "invalid") for t in bred)


@pytest.mark.parametrize("args, message", [
    (("search", "--space", "nb201"), "give --table PATH"),
    (("search", "--space", "nb201", "--table", "/nonexistent.csv"), "/nonexistent.csv"),
    (("search", "--data", "/no/such/data"), "/no/such/data"),
    (("search", "--proposer", "nosuch", "--space", "cnn"), "unknown proposer 'nosuch'"),
    (("search", "--llm", "vllm", "--distinct"), "distinct candidates need a backend"),   # before a server starts
])
def test_bad_search_input_is_one_line_and_exit_2(tmp_path, args, message):
    r = CliRunner().invoke(cli, [*args, "--store", str(tmp_path / "s"), "-q"])
    assert r.exit_code == 2, r.output
    assert message in r.output and len(r.output.strip().splitlines()) == 1


def test_reading_a_path_that_is_not_a_store(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file.txt").write_text("hello")
    r = CliRunner().invoke(cli, ["top", str(tmp_path / "junk")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    r = CliRunner().invoke(cli, ["top", str(tmp_path / "missing")])
    assert r.exit_code == 2 and "no store" in r.output


def test_models_list_and_prepare_refuses_what_cannot_be_had_offline():
    r = run("models", "list")
    assert r.exit_code == 0 and "smollm2" in r.output and "qwen2.5-7b-instruct" in r.output
    r = CliRunner().invoke(cli, ["models", "prepare", "qwen2.5-7b-instruct"])
    assert r.exit_code == 2 and "cannot be prepared offline" in r.output
    r = CliRunner().invoke(cli, ["models", "prepare", "nosuch"])
    assert r.exit_code == 2 and "unknown model 'nosuch'" in r.output


@pytest.mark.slow    # spawns processes
def test_sigterm_stops_a_search_like_ctrl_c(tmp_path):
    """``kill`` (SIGTERM) reports what is safe and exits 130, as Ctrl-C does; a job started in the background has
    SIGINT ignored, so SIGTERM is how it is stopped."""
    import subprocess
    import sys
    import time

    from llmnas_local.store import LmdbStore

    store = tmp_path / "store"
    proc = subprocess.Popen([sys.executable, "-m", "llmnas_local.cli.main", "search", "--proposer", "random",
                             "--budget", "200", "--store", str(store), "-q"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:      # wait for the first finished trial
            if (store / "data.mdb").exists():
                with LmdbStore(store, readonly=True) as s:
                    if next(s.trials(), None) is not None:
                        break
            time.sleep(0.5)
        proc.terminate()
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted:" in err and "run the same command to resume" in err
    with LmdbStore(store, readonly=True) as s:
        assert len(list(s.trials())) >= 1


def test_the_cli_runs_outside_the_main_thread():
    """Signal handlers can be set only from the main thread: embedding the CLI in a thread must still work."""
    import threading

    results = []
    thread = threading.Thread(target=lambda: results.append(run("dsl", "grammar", "nb201")))
    thread.start()
    thread.join()
    assert results[0].exit_code == 0 and "root ::=" in results[0].output


@pytest.mark.slow
def test_the_default_proposer_on_nb201_is_llm_edit(nb201_csv, smollm2_dir, tmp_path):
    """No --proposer on nb201: llm-edit with the embedded model (the grids' best LLM proposer), end to end."""
    from llmnas_local.store import open_store

    r = run("search", "--space", "nb201", "--table", nb201_csv, "--budget", 14, "--store", tmp_path / "s", "-q")
    assert r.exit_code == 0, r.output
    assert "run llm-edit-s0-" in r.output and "best (by validation)" in r.output
    with open_store(tmp_path / "s", readonly=True) as store:
        [record] = store.list_runs()
        assert record.proposer == "llm-edit" and record.proposer_settings["hints"] is False
        assert record.proposer_settings["model"] == "smollm2"
