"""The nb201 builder reproduces NAS-Bench-201's network: it trains, and its parameter counts match the benchmark's."""
from __future__ import annotations

import csv
import random

import pytest
import torch

from llmnas_local.builder import build_model
from llmnas_local.builder.nb201 import Nb201Cell, Zero, build_nb201
from llmnas_local.dsl.nb201 import EDGES, Nb201Space

SPACE = Nb201Space()
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
ALL_CONV3, ALL_NONE = 1462, 1651   # arch indices in the benchmark


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one thread is faster, twice so when the 2 cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def table(nb201_csv) -> list[dict[str, str]]:
    with open(nb201_csv, newline="") as f:
        return list(csv.DictReader(f))


def assert_same_params(count: int, printed: str) -> None:
    """The table prints params in millions to 6 significant digits: agree to half a unit of its last digit (5e-7 M
    below 1 M, 5e-6 M above)."""
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    assert abs(count / 1e6 - float(printed)) <= 0.5 * 10 ** -decimals + 1e-12, (count, printed)


@pytest.mark.parametrize("text, num_classes, in_chans, size", [
    (RESNET, 10, 3, 16),
    ("|nor_conv_1x1~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|", 5, 1, 8),
    ("|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|avg_pool_3x3~1|skip_connect~2|", 100, 3, 8),
])
def test_forward_backward(text, num_classes, in_chans, size):
    torch.manual_seed(0)
    model = build_model(   # through the registry, as the search builds it
        SPACE.parse(text), num_classes=num_classes, in_chans=in_chans, input_size=size)
    logits = model(torch.randn(2, in_chans, size, size))
    assert logits.shape == (2, num_classes)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.head.fc.weight.grad.abs().sum() > 0


def test_cell_wiring():
    torch.manual_seed(0)
    cell = Nb201Cell(SPACE.parse("|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|none~1|"
                                 "nor_conv_3x3~2|"), 4).eval()
    x = torch.randn(1, 4, 6, 6)
    nodes = [x, 0, 0, 0]
    for (to, frm), edge in zip(EDGES, cell.edges):
        nodes[to] = nodes[to] + edge(nodes[frm])
    assert torch.allclose(cell(x), nodes[3])
    assert isinstance(cell.edges[4], Zero) and not cell.edges[4](x).any()
    pool = cell.edges[1]
    assert pool.kernel_size == 3 and pool.stride == 1 and pool.padding == 1 and not pool.count_include_pad


def test_zero_output_cell_ignores_its_input():
    model = SPACE.build(SPACE.parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"), 10, 3, 32)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(torch.randn(2, 3, 8, 8)), model(torch.randn(2, 3, 8, 8)))


def test_params_match_the_benchmark(table):
    rows = random.Random(0).sample(table, 200) + [table[ALL_CONV3], table[ALL_NONE]]
    assert set(table[ALL_NONE]["arch_str"].split("|")) <= {"", "+", "none~0", "none~1", "none~2"}
    for row in rows:
        assert_same_params(n_params(build_nb201(SPACE.parse(row["arch_str"]), num_classes=10)), row["params_M_c10"])
    assert n_params(build_nb201(SPACE.parse(table[ALL_CONV3]["arch_str"]), num_classes=10)) == 1_531_546


def test_params_match_the_benchmark_cifar100(table):
    for row in random.Random(1).sample(table, 4) + [table[ALL_CONV3]]:
        assert_same_params(n_params(build_nb201(SPACE.parse(row["arch_str"]), num_classes=100)), row["params_M_c100"])
