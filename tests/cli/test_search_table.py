"""``llmnas search`` on any table: the column options, the ImageNet16-120 preset, and one line + exit 2 for a bad
table (never a traceback)."""
from __future__ import annotations

import gzip

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli
from tests.evaluators.synthetic_table import IN16, write_table


def search(tmp_path, *args):
    return CliRunner().invoke(cli, ["search", "--space", "nb201", "--proposer", "random", "--budget", "5",
                                    "--store", str(tmp_path / "store"), "-q", *map(str, args)])


@pytest.fixture(scope="module")
def in16_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("in16") / "in16.csv"
    write_table(path, IN16)
    return path


def test_imagenet16_preset(tmp_path, in16_csv):
    r = search(tmp_path, "--table", in16_csv, "--preset", "imagenet16-120")
    assert r.exit_code == 0, r.output
    assert "5 evaluations" in r.output and "best (by validation): val_acc" in r.output


def test_column_options_without_a_preset(tmp_path):
    path = tmp_path / "custom.csv"
    write_table(path, ("acc_valid", "acc_final", "size_m", "mults_m"))
    r = search(tmp_path, "--table", path, "--preset", "none", "--val-column", "acc_valid", "--test-column",
               "acc_final", "--params-column", "size_m", "--flops-column", "mults_m", "--num-classes", 7,
               "--input-size", 24)
    assert r.exit_code == 0, r.output
    assert "5 evaluations" in r.output and "best (by validation): val_acc" in r.output


@pytest.mark.parametrize("args, message", [
    (("--preset", "none", "--val-column", "in16_val_acc_200ep"), "missing: test, params, flops"),
    (("--preset", "imagenet16-120", "--num-classes", 10), "contradicts the column in16_val_acc_200ep"),
    (("--preset", "imagenet16-120", "--val-column", "nosuch"), "no column 'nosuch'"),
    (("--preset", "imagenet16", ), "unknown preset 'imagenet16'"),
])
def test_bad_column_options(tmp_path, in16_csv, args, message):
    r = search(tmp_path, "--table", in16_csv, *args)
    assert r.exit_code == 2 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_column_options_are_for_the_table(tmp_path):
    r = CliRunner().invoke(cli, ["search", "--space", "cnn", "--val-column", "x", "--store", str(tmp_path / "s")])
    assert r.exit_code == 2 and "--val-column is for --space nb201, not cnn" in r.output


@pytest.mark.parametrize("content, message", [
    (gzip.compress(b"arch_str,a\n"), "a gzip archive, not a CSV table"),
    (b"\x00\x01\x02", "binary data"),
    (b"arch_str,in16_val_acc_200ep,in16_test_acc_200ep,params_M_in16,flops_M_in16\n"
     b"|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|,1,2,x,4\n",
     "line 2: params_M_in16 is 'x', not a number"),
])
def test_a_bad_table_is_one_line_and_exit_2(tmp_path, content, message):
    path = tmp_path / "table.csv"
    path.write_bytes(content)
    r = search(tmp_path, "--table", path, "--preset", "imagenet16-120")
    assert r.exit_code == 2, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0] and "Traceback" not in r.output
    assert isinstance(r.exception, SystemExit)
