"""Kill soak: a search killed with ``kill -9`` at random moments, again and again, ends with exactly the store of an
uninterrupted run. Claims, checked by the figures this prints:

- no committed trial is lost or changed by any kill (each kill is followed by a fresh read of the store: what it
  holds must still be there, byte for byte, at the end): ``lost 0``;
- no architecture is evaluated twice, and the final run equals, trial for trial (proposal, status, architecture,
  metrics), the run an uninterrupted search with the same seed writes: ``repeated 0``, ``identical yes``;
- ``llmnas store verify`` finds every record readable.

Each round runs ``llmnas search`` (the real CLI, in its own process group) on the same store and SIGKILLs the whole
group after a random delay drawn from ``--delay`` (seeded by ``--seed``): kills land during start-up (imports, the table,
opening the store), between trials and inside commits. Rounds go on until ``--kills`` kills are done; a last round then
runs to the end. On ``--space cnn`` the search trains on digits (small caps: seconds per trial) and its training
workers are killed with it.

    python benchmarks/kill_soak.py --table ../shared/data/nb201/nb201_cifar.csv [--kills 60] [--budget 1500]
    python benchmarks/kill_soak.py --space cnn --kills 20 --budget 30 --delay 2 12

The log (every round, the figures, git commit, versions, machine) goes to ``benchmarks/results/kill-soak/``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmnas_local.bench.provenance import git_info, machine_info, package_versions
from llmnas_local.records import PEAK_MEM_MB, TRAIN_S, TrialRecord, is_transient
from llmnas_local.store import LmdbStore, StoreError

WORKER = "llmnas_local.evaluators.worker"
CNN_ARGS = ["--data", "digits", "--train-size", "256", "--val-size", "64", "--test-size", "64", "--input-size", "8",
            "--max-params-m", "0.5", "--max-flops-m", "8", "--device", "cpu"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
VARYING = (TRAIN_S, PEAK_MEM_MB)


def search_command(args: argparse.Namespace, store: Path) -> list[str]:
    cmd = [sys.executable, "-m", "llmnas_local.cli.main", "search", "--space", args.space, "--proposer",
           args.proposer, "--budget", str(args.budget), "--seed", str(args.seed), "--store", str(store), "-q"]
    return cmd + (["--table", str(args.table)] if args.space == "nb201" else CNN_ARGS)


def read_trials(store: Path) -> list[TrialRecord]:
    """Every trial, by a fresh reader (one that stayed open across the writer's death could miss its last commit)."""
    try:
        with LmdbStore(store, readonly=True) as st:
            return list(st.trials())
    except StoreError as e:
        if "no store at" in str(e):
            return []
        raise


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] not in "ZX" and WORKER.encode() in cmdline:
                out.append(int(entry.name))
    return out


def kill_round(cmd: list[str], delay_s: float) -> tuple[str, float]:
    """Run the search; SIGKILL its process group (and its training workers) after ``delay_s``. Returns ("killed" or
    "finished", seconds it ran)."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=ENV)
    try:
        proc.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        workers = children(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for w in workers:                       # they exit within a second by themselves; do not wait for it
            try:
                os.kill(w, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.stderr.close()
        return "killed", time.monotonic() - t0
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"the search failed (exit {proc.returncode}) after {time.monotonic() - t0:.1f} s: "
                         f"{err.strip()[-2000:]}")
    return "finished", time.monotonic() - t0


def key(t: TrialRecord) -> tuple:
    """What must be equal to an uninterrupted run's trial: all but wall times and peak memory, which vary."""
    metrics = {k: v for k, v in t.metrics.items() if k not in VARYING}
    return t.seq, t.raw, t.canonical, t.status, t.arch_hash, json.dumps(metrics, sort_keys=True), t.error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", choices=("nb201", "cnn"), default="nb201")
    parser.add_argument("--table", type=Path, default=Path("../shared/data/nb201/nb201_cifar.csv"))
    parser.add_argument("--proposer", default="random")
    parser.add_argument("--budget", type=int, default=1500)
    parser.add_argument("--kills", type=int, default=60)
    parser.add_argument("--delay", type=float, nargs=2, default=(0.2, 2.5), metavar=("MIN_S", "MAX_S"),
                        help="each round is killed after a delay drawn uniformly from [MIN_S, MAX_S]")
    parser.add_argument("--seed", type=int, default=3, help="seed of the search and of the kill delays")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "kill-soak")
    args = parser.parse_args()
    rng = random.Random(f"kill-soak:{args.seed}")

    with tempfile.TemporaryDirectory(prefix="kill-soak-") as tmp:
        soak, reference = Path(tmp) / "soak", Path(tmp) / "reference"
        t0 = time.monotonic()
        kill_round(search_command(args, reference), delay_s=3600)
        ref = read_trials(reference)
        print(f"reference: an uninterrupted run of {len(ref)} trials in {time.monotonic() - t0:.1f} s")

        rounds, seen, lost_now = [], [], 0
        cmd = search_command(args, soak)
        while True:
            killing = len([r for r in rounds if r["end"] == "killed"]) < args.kills
            delay = rng.uniform(*args.delay) if killing else 3600
            end, ran_s = kill_round(cmd, delay)
            now = read_trials(soak)
            # Everything a reader saw committed after any earlier kill must still be there, unchanged.
            kept = len(seen) <= len(now) and [t.dumps() for t in now[:len(seen)]] == [t.dumps() for t in seen]
            lost = 0 if kept else sum(1 for a, b in zip(seen, now) if a.dumps() != b.dumps()) + max(
                0, len(seen) - len(now))
            lost_now += lost
            rounds.append({"round": len(rounds) + 1, "end": end, "delay_s": round(delay, 3), "ran_s": round(ran_s, 3),
                           "trials_before": len(seen), "trials_after": len(now), "lost": lost})
            print(f"round {len(rounds):3d}: {end:8s} after {ran_s:5.2f} s, trials {len(seen):5d} -> {len(now):5d}"
                  + (f"  LOST {lost}" if lost else ""), flush=True)
            seen = now
            if end == "finished":
                break

        final = read_trials(soak)
        verify = subprocess.run([sys.executable, "-m", "llmnas_local.cli.main", "store", "verify", str(soak)],
                                capture_output=True, text=True, env=ENV)

    evaluated: dict[str, int] = {}
    repeated = 0
    for t in final:
        if t.status.evaluated:
            if t.arch_hash in evaluated and not is_transient(*evaluated_status(final, evaluated[t.arch_hash])):
                repeated += 1
            evaluated[t.arch_hash] = t.seq
    ref_keys, final_keys = [key(t) for t in ref], [key(t) for t in final]
    missing = len(set(ref_keys) - set(final_keys))
    identical = ref_keys == final_keys
    kills = sum(r["end"] == "killed" for r in rounds)
    progress = sum(r["trials_after"] > r["trials_before"] for r in rounds if r["end"] == "killed")
    figures = {"rounds": len(rounds), "kills": kills, "kills_after_progress": progress,
               "kills_before_progress": kills - progress, "trials": len(final), "reference_trials": len(ref),
               "lost": lost_now + missing, "repeated": repeated, "identical": identical,
               "verify_ok": verify.returncode == 0}
    print(f"\n{args.space}, {args.proposer}, budget {args.budget}, seed {args.seed}, kill delays "
          f"U({args.delay[0]:g}, {args.delay[1]:g}) s")
    print(f"rounds {len(rounds)}, kills {kills} ({progress} after some trials, {kills - progress} before any new one), "
          f"trials {len(final)} (reference {len(ref)}), lost {figures['lost']}, repeated {repeated}, "
          f"identical {'yes' if identical else 'NO'}, store verify {'ok' if figures['verify_ok'] else 'FAILED'}")
    if not figures["verify_ok"]:
        print(verify.stdout + verify.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / f"{args.space}-{args.proposer}-b{args.budget}-s{args.seed}-k{args.kills}.json"
    log.write_text(json.dumps({
        "command": " ".join(sys.argv), "search": search_command(args, Path("STORE")), "figures": figures,
        "rounds": rounds, "git": git_info(), "versions": package_versions(), "machine": machine_info(),
    }, indent=1) + "\n")
    print(f"log: {log}")
    if figures["lost"] or repeated or not identical or not figures["verify_ok"]:
        sys.exit(1)


def evaluated_status(trials: list[TrialRecord], seq: int):
    t = trials[seq]
    return t.status, t.error


if __name__ == "__main__":
    main()
