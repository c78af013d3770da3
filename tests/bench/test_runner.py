"""The benchmark end to end on the real NAS-Bench-201 table: report files, resume, grid extension, shared LLM
backends (with a fake backend), refusal of changed entries."""
from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from llmnas_local.bench import run_bench
from llmnas_local.bench.config import BenchConfig, EntryConfig, GridError, SpaceConfig
from llmnas_local.bench.runner import summarize_run
from llmnas_local.dsl import get_space
from llmnas_local.llm.base import BaseBackend, Completion, Generation
from llmnas_local.proposers import register_proposer
from llmnas_local.records import TEST_ACC, VAL_ACC, TrialRecord, TrialStatus

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def smoke_config(table, seeds=2, **changes) -> BenchConfig:
    cfg = BenchConfig(name="smoke", entries=(EntryConfig("random", "random"),
                                            EntryConfig("evolution", "evolution", {"population": 10, "tournament": 3})),
                      seeds=tuple(range(seeds)), space=SpaceConfig(table=str(table), preset="cifar10"),
                      budgets=(10, 20), max_budget=20, reference="evolution")
    return cfg.replace(**changes) if changes else cfg


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and data[12:16] == b"IHDR" and len(data) > 1000
    import matplotlib.image

    assert matplotlib.image.imread(path).ndim == 3


@pytest.fixture(scope="module")
def smoke(nb201_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    return out, run_bench(smoke_config(nb201_csv), out)


def test_more_references_add_a_comparison_table_each(nb201_csv, tmp_path):
    result = run_bench(smoke_config(nb201_csv, more_references=("random",)), tmp_path)
    results = json.loads((result.out_dir / "results.json").read_text())
    pairs = {(c["entry"], c["reference"]) for c in results["comparisons"]}
    assert pairs == {("random", "evolution"), ("evolution", "random")}
    assert results["grid"]["more_references"] == ["random"]
    table = (result.out_dir / "table.md").read_text()
    first, second = table.index("## Paired comparisons against `evolution`"), table.index(
        "## Paired comparisons against `random`")
    assert first < second and "| evolution | 20 | 2 |" in table[second:] and "| random | 20 | 2 |" in table[first:second]


def test_report_files_are_well_formed(smoke):
    out, result = smoke
    folder = out / "smoke"
    assert result.out_dir == folder and sorted(result.executed) == ["evolution-s0", "evolution-s1", "random-s0",
                                                                     "random-s1"]
    results = json.loads((folder / "results.json").read_text())
    assert set(results["entries"]) == {"random", "evolution"}
    for name, e in results["entries"].items():
        assert e["runs"] == 2 and e["stalled_runs"] == e["incomplete_runs"] == 0 and set(e["at_budget"]) == {"10", "20"}
        assert 85 < e["at_budget"]["20"]["mean"] < 94.5 and e["distinct_evaluations"] == 40
        assert 0 < e["valid_rate"] <= 1 and 0 <= e["duplicate_rate"] < 1 and e["wall_s_per_run"]["n"] == 2
    runs = {r["run_id"]: r for r in results["runs"]}
    assert set(runs) == {"random-s0", "random-s1", "evolution-s0", "evolution-s1"}
    curve = runs["evolution-s1"]["curve_test"]
    assert len(curve) == 20 and results["entries"]["evolution"]["at_budget"]["20"]["max"] >= curve[-1]
    assert results["protocol"]["select_by_column"] == "c10valid_val_acc_200ep"
    assert results["protocol"]["report_column"] == "c10_test_acc_200ep"
    assert [c["budget"] for c in results["comparisons"]] == [10, 20]
    assert all(c["entry"] == "random" and c["reference"] == "evolution" for c in results["comparisons"])

    table = (folder / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| proposer | seeds"))
    assert "| 10 | 20 |" in header
    rows = [line for line in table.splitlines() if line.startswith(("| random | 2 |", "| evolution | 2 |"))]
    assert len(rows) == 2 and all(line.count(" ± ") == 2 for line in rows)
    assert "## Paired comparisons against `evolution`" in table and "| random | 20 | 2 |" in table

    for png in ("curves.png", "distribution.png"):
        assert_png(folder / png)

    prov = json.loads((folder / "provenance.json").read_text())
    assert len(prov["git"]["commit"] or "x" * 40) == 40 and "dirty" in prov["git"]
    assert prov["packages"]["numpy"] and "llmnas_local" in prov["packages"] and prov["machine"]["cpu_count"] >= 1
    assert prov["seeds"] == [0, 1] and prov["grid"]["entries"][1]["settings"] == {"population": 10, "tournament": 3}
    assert prov["table"]["sha256"] == results["protocol"]["recipe"]["table_sha256"]
    import hashlib

    assert prov["table_md_sha256"] == hashlib.sha256((folder / "table.md").read_bytes()).hexdigest()
    assert (folder / ".gitignore").read_text() == "store/\n"


def test_rerun_adds_nothing_and_a_new_seed_runs_alone(smoke, nb201_csv):
    out, first = smoke
    before = json.loads((out / "smoke" / "results.json").read_text())["runs"]
    again = run_bench(smoke_config(nb201_csv), out, provenance=False)
    assert again.executed == []
    assert json.loads((out / "smoke" / "results.json").read_text())["runs"] == before
    more = run_bench(smoke_config(nb201_csv, seeds=3), out, provenance=False)
    assert more.executed == ["random-s2", "evolution-s2"]
    results = json.loads((out / "smoke" / "results.json").read_text())
    assert results["entries"]["random"]["runs"] == 3
    assert [r for r in results["runs"] if r["seed"] < 2] == before       # the old seeds are untouched


def test_changed_entry_is_refused(smoke, nb201_csv):
    out, _ = smoke
    changed = smoke_config(nb201_csv).replace(
        entries=(EntryConfig("random", "random"), EntryConfig("evolution", "evolution", {"population": 20})))
    with pytest.raises(GridError, match="entry 'evolution' changed"):
        run_bench(changed, out, provenance=False)


def test_cli_bench(nb201_csv, tmp_path):
    from llmnas_local.cli.bench_cmd import bench

    args = ["--proposer", "random", "--proposer", "evolution", "--seeds", "2", "--budget", "12", "--budgets", "5,12",
            "--table", str(nb201_csv), "--preset", "cifar100", "--name", "cli", "--results-dir", str(tmp_path), "-q"]
    r = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "| random | 2 |" in r.output and "| 5 | 12 |" in r.output
    results = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert results["protocol"]["report_column"] == "c100_test_acc_200ep" and results["grid"]["reference"] == "evolution"
    bad = CliRunner().invoke(bench, ["--proposer", "nosuch", "--table", str(nb201_csv), "--results-dir",
                                     str(tmp_path), "-q"])
    assert bad.exit_code == 2 and "unknown proposer 'nosuch'" in bad.output


# -- LLM entries: one backend per (backend, model), shared by entries and seeds ----------------------------------------
class RandomCellBackend(BaseBackend):
    """Answers the improver with a fixed diagnosis and the generator with random cells (one in five repeated)."""

    name = "fake"
    created: list[str] = []

    def __init__(self, model: str, **options):
        super().__init__(model)
        RandomCellBackend.created.append(model)
        self.closed = False

    def _generate(self, prompts, constraint, *, n, max_tokens, temperature, top_p, seed):
        rng = random.Random(seed)
        if constraint.json_schema is not None:
            text = json.dumps({"problem": "p", "modification": "m"})
            return [Generation([Completion(text, 7, "stop")] * n, 50, 0.25) for _ in prompts]
        space = get_space("nb201")
        cells = [space.sample(rng) for _ in range(n)]
        cells[-1] = cells[0]
        return [Generation([Completion(c, 30, "stop") for c in cells], 400, 0.5) for _ in prompts]

    def close(self):
        self.closed = True


def test_llm_entries_share_one_backend_per_model(nb201_csv, tmp_path):
    RandomCellBackend.created = []
    factory = lambda name, model, **options: RandomCellBackend(model, **options)   # noqa: E731
    cfg = smoke_config(nb201_csv, entries=(
        EntryConfig("k5", "llm", {"model": "m1", "candidates": 4}),
        EntryConfig("k0", "llm", {"model": "m1", "candidates": 4, "window": 0}),
        EntryConfig("other", "llm", {"model": "m2", "candidates": 4, "llm": "fake"}),
        EntryConfig("evolution", "evolution")), max_budget=12, budgets=(12,))
    result = run_bench(cfg, tmp_path, backend_factory=factory)
    assert sorted(RandomCellBackend.created) == ["m1", "m2"]        # 3 entries x 2 seeds, 2 models
    assert len(result.executed) == 8
    results = json.loads((tmp_path / "smoke" / "results.json").read_text())
    k5 = results["entries"]["k5"]
    # per call: 400 prompt + 4 x 30 completion + 57 improver tokens; calls answer 3 new cells and 1 duplicate
    assert k5["llm_tokens_per_eval"] == pytest.approx((400 + 120 + 57) / 3, rel=0.35)
    assert k5["llm_s_per_eval"] == pytest.approx(0.75 / 3, rel=0.35)
    assert 0 < k5["duplicate_rate"] < 0.5
    table = (tmp_path / "smoke" / "table.md").read_text()
    assert "| k5 | 2 |" in table and "| other | 12 | 2 |" in table
    prov = json.loads((tmp_path / "smoke" / "provenance.json").read_text())
    assert [m["name"] for m in prov["models"]] == ["m1", "m2"]      # not folders here: recorded as not found
    assert all(m["note"] == "not found on this machine" for m in prov["models"])
    # rerun: nothing to do, so no backend is created
    RandomCellBackend.created = []
    assert run_bench(cfg, tmp_path, backend_factory=factory, provenance=False).executed == []
    assert RandomCellBackend.created == []


def test_summarize_run_counts_tokens_once_per_call():
    def trial(seq, status, val=None, test=None, **llm):
        metrics = {} if val is None else {VAL_ACC: val, TEST_ACC: test}
        return TrialRecord("r", seq, "llm", "x", status, metrics=metrics, llm=llm, timings={"propose_s": 0.1})

    call1 = dict(prompt_hash="h1", gen_s=1.0, tokens_in=100, tokens_out=10, improver_tokens_in=40,
                 improver_tokens_out=5, improver_s=0.5)
    call2 = dict(call1, prompt_hash="h2", gen_s=2.0)
    trials = [trial(0, TrialStatus.COMPLETE, 80.0, 81.0, **call1), trial(1, TrialStatus.DUPLICATE, **call1),
              trial(2, TrialStatus.INVALID, **call1), trial(3, TrialStatus.COMPLETE, 70.0, 90.0, **call2),
              trial(4, TrialStatus.COMPLETE, 85.0, 84.0, **call2)]
    r = summarize_run("e", 0, "r", trials, max_budget=2)
    assert r.n_evaluated == 2 and r.n_trials == 4                  # cut at the 2nd evaluation
    assert r.curve_test == [81.0, 81.0] and r.curve_val == [80.0, 80.0] and r.evaluated_test == [81.0, 90.0]
    assert r.llm_tokens == 2 * (100 + 40 + 5) + 4 * 10 and r.llm_s == pytest.approx(1.5 + 2.5)
    assert r.counts["duplicate"] == 1 and r.counts["invalid"] == 1 and r.stalled is None
    short = summarize_run("e", 0, "r", trials, max_budget=5)          # interrupted: later budgets are missing
    assert short.incomplete and short.curve_test == [81.0, 81.0, 84.0]
    stalled = summarize_run("e", 0, "r", trials, max_budget=5, stalled="200 proposals in a row ...")
    assert not stalled.incomplete and stalled.curve_test == [81.0, 81.0, 84.0, 84.0, 84.0]   # best carried forward
    # with call ids (every record since the typed LLMCall): two calls with identical figures are two calls
    by_id = [trial(i, TrialStatus.COMPLETE, 80.0, 81.0, call_id=c, **call1) for i, c in enumerate("aab")]
    assert summarize_run("e", 0, "r", by_id, max_budget=3).llm_tokens == 2 * (100 + 40 + 5) + 3 * 10


def test_a_stalled_run_keeps_its_best(nb201_csv, tmp_path):
    from llmnas_local.proposers.base import BaseProposer, Proposal

    class TwoCells(BaseProposer):
        name = "two-cells"

        def propose(self, history, n, rng):
            return [Proposal(CELLS[len(history) % 2])]

    CELLS = ["|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
             "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"]
    register_proposer("two-cells", TwoCells)
    cfg = smoke_config(nb201_csv, seeds=1, entries=(EntryConfig("two", "two-cells"),), reference=None)
    result = run_bench(cfg, tmp_path, provenance=False)
    results = json.loads(result.paths["results"].read_text())
    [run] = results["runs"]
    assert run["n_evaluated"] == 2 and "in a row" in run["stalled"] and len(run["curve_test"]) == 20
    assert results["entries"]["two"]["stalled_runs"] == 1 and results["entries"]["two"]["at_budget"]["20"]["n"] == 1
    assert "| two | 1 (1 stalled) |" in result.paths["table"].read_text()
    assert run_bench(cfg, tmp_path, provenance=False).executed == []      # a stalled run is not retried
