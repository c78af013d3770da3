"""How far nb201's canonical form collapses NAS-Bench-201's 15,625 cells, and whether collapsed cells are one network.

Claim: cells with the same canonical form are the same network, so the table's accuracies agree within a class up to
the benchmark's seed noise, and the canonical form merges what NAS-Bench-201's own ``to_unique_str`` merges except where
that function ignores weight sharing. Proof: the figures this script prints (class counts; spread of the accuracy
column within classes against random groups of the same sizes; the pairs each rule merges and their accuracy gaps).

    python benchmarks/nb201_collapse.py [CSV] [--metric c10valid_val_acc_200ep]

CSV defaults to ../shared/data/nb201/nb201_cifar.csv beside the repository. Needs no torch; about 10 s on 2 cores.
"""
from __future__ import annotations

import argparse
import collections
import csv
import itertools
import platform
import random
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llmnas_local.dsl.nb201 import (EDGES, NONE, OPS, SKIP, Nb201Space, Nb201Spec, has_signal,  # noqa: E402
                                    network_signature)


METRICS = ("c10valid_val_acc_200ep", "c10_test_acc_200ep", "c100_val_acc_200ep")
GOOD = {"c10valid_val_acc_200ep": 85.0, "c10_test_acc_200ep": 90.0, "c100_val_acc_200ep": 65.0}   # "trainable" bar


def nb201_unique_str(ops, drop_zeros: bool = False) -> str:
    """NAS-Bench-201's ``CellStructure.to_unique_str(consider_zero=True)`` (xautodl), which its paper's 6,466 counts.

    It writes a zero term as ``#`` but keeps it in the sum, so ``#+#`` is not recognised as zero and ``#+y`` differs from
    ``y``; ``drop_zeros=True`` drops zero terms instead (an empty sum is ``#``), the fix we compare against.
    """
    nodes, k = {0: "0"}, 0
    for j in (1, 2, 3):
        terms = []
        for i in range(j):
            op, xin = ops[k], nodes[i]
            k += 1
            if op == NONE or xin == "#":
                terms += [] if drop_zeros else ["#"]
            elif op == SKIP:
                terms += xin.split("+") if drop_zeros else [xin]
            else:
                terms.append(f"({xin})@{op}")
        nodes[j] = "+".join(sorted(terms)) or "#"
    return nodes[3]


def brief_rules(ops) -> tuple:
    """Only the minimal rules: dead edges to none, the 1<->2 swap when 2<-1 is none, all zero-output cells one."""
    signal = has_signal(ops)
    if not signal[3]:
        return (NONE,) * 6
    reach = [False, False, False, True]   # reaches node 3 through non-none edges
    for (to, frm), op in reversed(list(zip(EDGES, ops))):
        if op != NONE and reach[to]:
            reach[frm] = True
    ops = tuple(op if signal[frm] and reach[to] else NONE for (to, frm), op in zip(EDGES, ops))
    if ops[2] == NONE:
        swapped = (ops[1], ops[0], NONE, ops[3], ops[5], ops[4])
        ops = min(ops, swapped, key=lambda o: [OPS.index(x) for x in o])
    return ops


def partition(cells, key) -> dict:
    classes = collections.defaultdict(list)
    for c in cells:
        classes[key(c)].append(c)
    return classes


def spread_stats(groups, acc) -> tuple[float, float, float, int]:
    """mean, median and max of (max - min accuracy) over groups of two or more cells; number of such groups."""
    spreads = [max(acc[c] for c in g) - min(acc[c] for c in g) for g in groups if len(g) > 1]
    return statistics.mean(spreads), statistics.median(spreads), max(spreads), len(spreads)


def gaps_between(cells, finer, coarser, acc) -> list[float]:
    """|accuracy difference| of every pair that ``coarser`` puts in one class and ``finer`` in two (one pair per two
    finer classes: their mean accuracies)."""
    out = []
    for group in partition(cells, coarser).values():
        sub = collections.defaultdict(list)
        for c in group:
            sub[finer(c)].append(acc[c])
        means = [statistics.mean(v) for v in sub.values()]
        out += [abs(a - b) for a, b in itertools.combinations(means, 2)]
    return out


def describe(name: str, gaps: list[float]) -> str:
    if not gaps:
        return f"{name}: none"
    return (f"{name}: {len(gaps)} pairs, |gap| mean {statistics.mean(gaps):.3f} median {statistics.median(gaps):.3f} "
            f"max {max(gaps):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="?", default=str(REPO.parent / "shared" / "data" / "nb201" / "nb201_cifar.csv"))
    ap.add_argument("--metric", action="append", help="accuracy column(s); default: " + ", ".join(METRICS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    metrics = args.metric or list(METRICS)

    space = Nb201Space()
    with open(args.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    cells = list(itertools.product(OPS, repeat=len(EDGES)))
    table = {space.parse(r["arch_str"]).ops: r for r in rows}
    assert len(rows) == len(cells) and set(table) == set(cells), "the table must hold every cell once"
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"# nb201_collapse  git {sha.stdout.strip() or '?'}  python {platform.python_version()}  "
          f"seed {args.seed}  table {args.csv}")

    ours = partition(cells, lambda c: space.canonicalize(Nb201Spec(c)).ops)
    zero = ours.pop((NONE,) * 6)
    nonzero = [c for c in cells if c not in set(zero)]
    sizes = collections.Counter(len(g) for g in ours.values())
    print(f"cells {len(cells)}  canonical classes {len(ours) + 1}  singletons {sizes[1]}  largest {max(sizes)}  "
          f"zero-output class {len(zero)} cells")
    nb201 = partition(cells, nb201_unique_str)
    print(f"NAS-Bench-201 to_unique_str(consider_zero=True): {len(nb201)} classes (the paper's 6,466)")
    print(f"minimal rules only (dead edges, 1<->2 swap, zero output): {len(partition(cells, brief_rules))} classes")
    print(f"ours, but a conv reading zeros kept as a learnt bias (strict_zero): "
          f"{len(partition(cells, lambda c: network_signature(c, strict_zero=True)))} classes")
    key_ours = {c: k for k, g in ours.items() for c in g} | {c: (NONE,) * 6 for c in zero}
    key_nb = {c: k for k, g in nb201.items() for c in g}
    split = sum(1 for g in nb201.values() if len({key_ours[c] for c in g}) > 1)
    merged = sum(1 for g in ours.values() if len({key_nb[c] for c in g}) > 1)
    print(f"vs NAS-Bench-201: {split} of its classes we split (it ignores weight sharing); {merged} of ours join "
          f"several of its (its '#' zero terms stay in sums)")
    fixed = partition(cells, lambda c: nb201_unique_str(c, drop_zeros=True))
    key_fixed = {c: k for k, g in fixed.items() for c in g}
    coarser = all(len({key_fixed[c] for c in g}) == 1 for g in ours.values()) and all(
        len({key_fixed[c] for c in g}) == 1 for g in nb201.values())
    print(f"its zero terms dropped: {len(fixed)} classes, coarser than both ours and its own: {coarser}; "
          f"ours = that, with classes split where one conv's weights are shared by two paths")

    live = [g for g in ours.values() if len(g) > 1]
    rng = random.Random(args.seed)
    shuffled = rng.sample(nonzero, len(nonzero))
    it = iter(shuffled)
    random_groups = [[next(it) for _ in g] for g in live]
    fine = key_ours.__getitem__
    for metric in metrics:
        acc = {c: float(table[c][metric]) for c in cells}
        print(f"\n[{metric}] within-class spread (max - min) over the {len(live)} classes of 2+ cells "
              f"(zero-output class apart):")
        mean, median, mx, _ = spread_stats(live, acc)
        worst = max(live, key=lambda g: max(acc[c] for c in g) - min(acc[c] for c in g))
        print(f"  canonical classes: mean {mean:.3f}  median {median:.3f}  max {mx:.3f}  "
              f"(worst: {space.format(Nb201Spec(worst[0]))}, {len(worst)} cells)")
        good = [g for g in live if statistics.mean(acc[c] for c in g) >= GOOD[metric]]
        mean_g, median_g, mx_g, _ = spread_stats(good, acc)
        print(f"  the {len(good)} classes with mean >= {GOOD[metric]}: mean {mean_g:.3f}  median {median_g:.3f}  "
              f"max {mx_g:.3f}")
        mean_r, median_r, mx_r, _ = spread_stats(random_groups, acc)
        print(f"  random groups of the same sizes: mean {mean_r:.3f}  median {median_r:.3f}  max {mx_r:.3f}")
        zacc = [acc[c] for c in zero]
        print(f"  zero-output class: {len(zero)} cells, all within {min(zacc):.2f}..{max(zacc):.2f} (chance)")
        print("  accuracy gaps between classes a coarser partition merges (class means):")
        print("    " + describe("rule 1's conv-on-zeros (ours vs strict_zero)", gaps_between(
            nonzero, lambda c: network_signature(c, strict_zero=True), fine, acc)))
        print("    " + describe("rules 5-6 beyond the minimal rules (ours vs minimal)",
                                gaps_between(cells, brief_rules, fine, acc)))
        print("    " + describe("weight sharing (NAS-Bench-201 merges, ours splits)",
                                gaps_between(cells, fine, nb201_unique_str, acc)))
        edit1 = [abs(acc[c] - acc[d]) for c in nonzero[::7] for d in _neighbours(c)
                 if key_ours[c] != key_ours[d] and key_ours[d] != (NONE,) * 6]
        print("    " + describe("baseline: one-edge mutations across classes (every 7th cell)", edit1))


def _neighbours(ops):
    for k in range(len(ops)):
        for op in OPS:
            if op != ops[k]:
                yield ops[:k] + (op,) + ops[k + 1:]


if __name__ == "__main__":
    main()
