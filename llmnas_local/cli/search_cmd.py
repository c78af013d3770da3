"""``llmnas search``: run (or resume) a search into a store."""
from __future__ import annotations

import contextlib
import sys

import click

from llmnas_local.cli.errors import SearchError, UserError, ignore_further_interrupts, user_errors
from llmnas_local.llm.models import EMBEDDED

DEFAULT_STORE = "runs/default"
# The LLM proposer the grids measured best on each space (benchmarks/README.md). No grid compares the LLM proposers
# on cnn (real trainings), so llm, the method's own proposer, stays its default.
DEFAULT_PROPOSER = {"nb201": "llm-edit", "cnn": "llm"}


@click.command()
@click.option("--space", default="cnn", show_default=True, help="Search space: cnn (train models) or nb201 (table).")
@click.option("--data", default="digits", show_default=True,
              help="cnn: 'digits', an ImageFolder dir or .tar.gz, a CIFAR python folder, or an .npz.")
@click.option("--table", type=click.Path(dir_okay=False), default=None, help="nb201: the NAS-Bench-201 CSV.")
@click.option("--preset", default="cifar10", show_default=True,
              help="nb201 table protocol: cifar10, cifar100, cifar10-12ep, cifar100-12ep, imagenet16-120, or none "
                   "(give the four --*-column options).")
@click.option("--val-column", default=None, help="nb201: the table's column to select by (overrides the preset's).")
@click.option("--test-column", default=None, help="nb201: the table's column to report (overrides the preset's).")
@click.option("--params-column", default=None, help="nb201: the table's parameter column, M (overrides the preset's).")
@click.option("--flops-column", default=None, help="nb201: the table's FLOPs column, M (overrides the preset's).")
@click.option("--num-classes", default=None, type=click.IntRange(min=1),
              help="nb201: the classes of the task of a --val-column no preset has (what the prompt says).")
@click.option("--proposer", default=None,
              help="llm-edit (evolution whose edits the LLM chooses, with its edit memory), llm (the LLM writes "
                   "whole architectures, with the feedback memory), llm-evo (evolution with the LLM as mutation "
                   "operator), random or evolution [default: llm-edit on nb201, llm on cnn].")
@click.option("--budget", default=20, show_default=True, type=click.IntRange(min=1),
              help="Distinct evaluations to reach (a resumed run counts what it already did).")
@click.option("--store", default=DEFAULT_STORE, show_default=True, type=click.Path(file_okay=False),
              help="LMDB store directory (created if missing; the same command resumes).")
@click.option("--seed", default=0, show_default=True, help="Seed of the proposer.")
@click.option("--train-seed", default=0, show_default=True,
              help="Seed of training and of the train/validation split (part of the recipe: runs with the same "
                   "recipe share outcomes).")
@click.option("--run-id", default=None, help="Name the run (default: derived from its settings).")
@click.option("--epochs", default=None, type=click.IntRange(min=1),
              help="Proxy training epochs [default: fitted to the machine and data, printed: on a GPU 1, the "
                   "method's proxy; on a CPU 1-3; digits: 3].")
@click.option("--lr", default=None, type=float, help="SGD learning rate [default: GPU 0.01; CPU and digits 0.05].")
@click.option("--batch-size", default=None, type=click.IntRange(min=2),
              help="[default: GPU 128; CPU and digits 32]")
@click.option("--input-size", default=None, type=int,
              help="Resize images to this [default: the data set's, at most 32 on a CPU; digits: 16]; nb201: the image "
                   "size of the task "
                   "of a --val-column no preset has.")
@click.option("--train-size", default=None, type=int,
              help="Use at most this many training images [default: all on a GPU; on a CPU about a minute's work].")
@click.option("--val-size", default=None, type=int,
              help="Use at most this many validation images [default: all on a GPU; 2000 on a CPU].")
@click.option("--test-size", default=None, type=int,
              help="Use at most this many test images [default: all on a GPU; 2000 on a CPU].")
@click.option("--max-params-m", default=None, type=float,
              help="Reject models above this many M parameters [default: none on a GPU; CPU and digits: 1].")
@click.option("--max-flops-m", default=None, type=float,
              help="Reject models above this many M FLOPs per image [default: none on a GPU; CPU and digits: 25].")
@click.option("--objective", default="acc", show_default=True,
              help="What the best model is: acc (validation accuracy), acc@params<=1M or acc@flops<=25M (the most "
                   "accurate within budgets, comma-separated), acc-2*params (minus 2 points per M parameters), or "
                   "both (acc-0.1*flops@params<=1M). Selection and the returned best follow it; part of the run id.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda or auto.")
@click.option("--timeout", default=900.0, show_default=True, help="Seconds before a training is stopped.")
@click.option("--workers", default="1", show_default=True, callback=lambda ctx, param, v: _parse_workers(v),
              help="Evaluations in parallel, or auto: on a GPU as many trainings as its free memory holds at their "
                   "measured peaks, on the CPU one per 2 cores (1 on 2 cores); the choice is printed.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where evaluations run: this machine, or a Ray cluster (each trial a Ray task; the proposer, "
                   "the LLM and the store stay here). Results and the run id do not depend on it.")
@click.option("--ray-address", default=None,
              help="--executor ray: auto (the cluster this machine is a node of) or HOST:PORT of the head node "
                   "[default: $RAY_ADDRESS, else a Ray instance on this machine].")
@click.option("--gpus-per-trial", default=None, type=click.FloatRange(min=0),
              help="--executor ray: GPUs of one trial; a fraction (0.25) packs trials on one GPU [default: 0].")
@click.option("--cpus-per-trial", default=None, type=click.FloatRange(min=0, min_open=True),
              help="--executor ray: CPUs of one trial (its torch threads) [default: 1].")
@click.option("--lookahead", default=None, type=click.IntRange(min=0),
              help="Proposals made ahead while a training runs (one worker): a trial then takes about max(propose, "
                   "train), not their sum. Exact on resume; the proposer does not see the last N evaluations, so N > 0 "
                   "is part of the run id [default: 1 with an LLM proposer on cnn and one worker, else 0].")
@click.option("--population", default=10, show_default=True, help="evolution, llm-evo, llm-edit: population size.")
@click.option("--tournament", default=3, show_default=True, help="evolution, llm-evo, llm-edit: tournament size.")
@click.option("--edit-choice", type=click.Choice(["calibrated", "sample"]), default="calibrated", show_default=True,
              help="llm-edit: the model's edit taken by calibrated scores (in-process backend) or written under a "
                   "grammar (any backend).")
@click.option("--epsilon", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="llm-edit: share of children made by evolution's random mutation instead of the model.")
@click.option("--hints", is_flag=True,
              help="LLM proposers: add the space's domain hints to the prompt (benchmark knowledge; recorded).")
@click.option("--llm", "llm_backend", type=click.Choice(["transformers", "vllm", "openai"]), default="transformers",
              show_default=True, help="llm: in-process transformers + xgrammar, a managed vLLM server, or a running "
                                      "OpenAI-compatible local server (--llm-url).")
@click.option("--model", default=EMBEDDED, show_default=True,
              help="llm: a registry name (llmnas models list) or a local model folder.")
@click.option("--llm-url", default=None, help="llm: base URL of a running local server (--llm openai).")
@click.option("--vllm-python", default=None,
              help="llm: the Python that runs the vLLM server (default: $LLMNAS_VLLM_PYTHON or this one).")
@click.option("--llm-timeout", default=None, type=click.FloatRange(min=0, min_open=True),
              help="llm, --llm openai/vllm: seconds to wait for one answer of the server [default: 600].")
@click.option("--candidates", type=int, default=None,
              help="llm: completions per generator call [default: 4]; llm-evo: children per call [default: 8].")
@click.option("--memory-window", default=None, type=click.IntRange(min=0),
              help="llm: diagnostic triples shown [default: 5]; llm-edit: last edits shown, and each slot's record "
                   "when > 0 [default: 0, the measured best] (0: no memory).")
@click.option("--elites", default=5, show_default=True, help="llm: best designs shown (0: none).")
@click.option("--improver/--no-improver", default=True, show_default=True, help="llm: the diagnosis role.")
@click.option("--distinct", is_flag=True,
              help="llm: a call's candidates drawn without replacement (stochastic beam search), none alike; "
                   "--llm transformers.")
@click.option("--temperature", type=float, default=None,
              help="llm, llm-evo, llm-edit: sampling temperature [default: 0.8; llm-evo: 1.0; llm-edit: 0, the best "
                   "calibrated edit].")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress bar, nor the lines that say which proxy and caps were fitted to the machine.")
@user_errors
def search(space: str, data: str, table: str | None, preset: str, proposer: str | None, budget: int, store: str,
           seed: int, train_seed: int, run_id: str | None, epochs: int | None, lr: float | None,
           batch_size: int | None, input_size: int | None,
           train_size: int | None, val_size: int | None, test_size: int | None, max_params_m: float | None,
           max_flops_m: float | None, device: str, timeout: float, workers: int | str, population: int, tournament: int,
           edit_choice: str, epsilon: float, hints: bool, llm_backend: str, model: str, llm_url: str | None, vllm_python: str | None,
           candidates: int | None,
           memory_window: int | None, elites: int, improver: bool, distinct: bool, temperature: float | None,
           quiet: bool, val_column: str | None = None, test_column: str | None = None,
           params_column: str | None = None, flops_column: str | None = None, num_classes: int | None = None,
           llm_timeout: float | None = None, lookahead: int | None = None, objective: str = "acc",
           executor: str = "local", ray_address: str | None = None, gpus_per_trial: float | None = None,
           cpus_per_trial: float | None = None) -> None:
    """Search SPACE with PROPOSER until BUDGET distinct evaluations; print the best architecture."""
    from llmnas_local.dsl import get_space
    from llmnas_local.llm import BackendSpec
    from llmnas_local.proposers import LLM_PROPOSERS, create_proposer
    from llmnas_local.evaluators.data import quiet_decoding
    from llmnas_local.evaluators.worker import WorkerStartError
    from llmnas_local.search import Search, SearchStalled
    from llmnas_local.store import StoreFullError, open_store

    sp = get_space(space)
    proposer = proposer or DEFAULT_PROPOSER.get(space, "llm")
    goal = _objective(objective)
    lookahead = _lookahead(lookahead, workers, proposer in LLM_PROPOSERS and not sp.tabular)
    with quiet_decoding() if quiet else contextlib.nullcontext():
        evaluator = _create_evaluator(sp, data=data, table=table, preset=preset, train_seed=train_seed, epochs=epochs,
                                      lr=lr, batch_size=batch_size, input_size=input_size, train_size=train_size,
                                      val_size=val_size, test_size=test_size, max_params_m=max_params_m,
                                      max_flops_m=max_flops_m, device=device, timeout=timeout,
                                      workers=1 if workers == "auto" else workers,
                                      val_column=val_column, test_column=test_column, params_column=params_column,
                                      flops_column=flops_column, num_classes=num_classes,
                                      on_fit=None if quiet else lambda text: click.echo(text, err=True),
                                      executor=_executor(executor, ray_address, gpus_per_trial, cpus_per_trial))
    caps = {"max_params_m": evaluator.constraints.max_params_m, "max_flops_m": evaluator.constraints.max_flops_m}
    settings: dict = {}
    if proposer in ("evolution", "llm-evo", "llm-edit"):
        settings = {"population": population, "tournament": tournament}
    if proposer in LLM_PROPOSERS:
        settings["backend"] = BackendSpec(llm_backend, model, llm_url,
                                          _backend_settings(llm_backend, vllm_python, llm_timeout))
        settings.update({k: v for k, v in (("candidates", candidates), ("temperature", temperature)) if v is not None})
        settings["hints"] = hints
        if proposer == "llm-edit":
            window = 0 if memory_window is None else memory_window
            settings.update(epsilon=epsilon, window=window, slot_stats=window > 0, choice=edit_choice)
            if edit_choice == "calibrated" and llm_backend != "transformers":
                raise UserError(f"--edit-choice calibrated scores edits in process (--llm transformers); with "
                                f"--llm {llm_backend} use --edit-choice sample")
        if proposer == "llm":
            settings.update(window=5 if memory_window is None else memory_window, elites=elites, improver=improver)
            if distinct:
                settings["distinct"] = True
        if not quiet:
            click.echo(f"loading {model} on the {llm_backend} backend...", err=True)
    if lookahead:
        _share_cores(evaluator, proposer in LLM_PROPOSERS and llm_backend == "transformers")
    prop = create_proposer(proposer, **settings)
    with open_store(store) as st:
        study = Search(sp, prop, evaluator, st, seed=seed, run_id=run_id, lookahead=lookahead, objective=goal)
        done = study.num_evaluated
        if done:
            click.echo(f"resuming run {study.run_id}: {done} evaluations already in {store}", err=True)
        if workers == "auto" and executor == "ray":
            workers = evaluator.slots()
            if not quiet:
                click.echo(f"--workers auto: {workers} trials at once (what the Ray cluster's resources hold)",
                           err=True)
        if workers == "auto":
            workers = _auto_workers(evaluator, st, study, proposer in LLM_PROPOSERS and llm_backend == "transformers",
                                    quiet)
        progress = _Progress(study, budget, disable=quiet)
        safe = lambda: f"{len(study.history)} trials of run {study.run_id} are safe in {store}"  # noqa: E731
        try:
            best = study.run(budget, workers=workers, callback=progress.update)
        except SearchStalled as e:
            progress.close()
            raise UserError(str(e))
        except KeyboardInterrupt:
            ignore_further_interrupts()       # a second Ctrl-C or SIGTERM would interrupt the clean-up
            progress.close()
            click.echo(f"interrupted: {study.num_evaluated} evaluations are safe in {store}; "
                       f"run the same command to resume", err=True)
            sys.exit(130)
        except StoreFullError as e:
            progress.close()
            raise SearchError(f"{e}; {safe()}: free space and rerun the same command to resume")
        except WorkerStartError as e:
            progress.close()
            raise SearchError(f"{e}; {safe()}: free memory (fewer --workers, a smaller --train-size) and rerun the "
                              f"same command to resume")
        finally:
            evaluator.close()
            prop.close()
        progress.close()
        _report(study, best, store, _no_result_hint(sp, timeout, caps))


def _backend_settings(llm_backend: str, vllm_python: str | None, llm_timeout: float | None) -> dict:
    settings: dict = {"python": vllm_python} if llm_backend == "vllm" and vllm_python else {}
    if llm_timeout is not None:
        if llm_backend == "transformers":
            raise UserError("--llm-timeout is for a server (--llm openai or vllm), not --llm transformers")
        settings["timeout_s" if llm_backend == "openai" else "request_timeout_s"] = llm_timeout
    return settings


def _create_evaluator(space, *, data: str, table: str | None, preset: str, train_seed: int, epochs: int | None,
                      lr: float | None, batch_size: int | None, input_size: int | None, train_size: int | None,
                      val_size: int | None, test_size: int | None, max_params_m: float | None,
                      max_flops_m: float | None, device: str, timeout: float, workers: int, on_fit=None,
                      executor=None, **columns):
    """The search's evaluator, as ``llmnas bench`` builds it (:func:`llmnas_local.evaluators.create_evaluator`, with
    the proxy settings fitted to the machine and the data, which ``on_fit`` is told); an option the space's kind of
    evaluation does not take is a UserError."""
    from llmnas_local.evaluators import create_evaluator
    from llmnas_local.gpu import threads_per_worker

    caps = {"max_params_m": max_params_m, "max_flops_m": max_flops_m}
    columns = {k: v for k, v in columns.items() if v is not None}
    if space.tabular:
        if table is None:
            raise UserError(f"--space {space.name} evaluates by table lookup: give --table PATH (a NAS-Bench-201 "
                            f"CSV)")
        return create_evaluator(space, table=table, preset=preset, table_options={**columns, "input_size": input_size},
                                executor=executor, **caps)
    if table is not None or columns:
        flag = "--table" if table is not None else "--" + next(iter(columns)).replace("_", "-")
        raise UserError(f"{flag} is for --space nb201, not {space.name}")
    recipe = {k: v for k, v in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size)) if v is not None}
    data_spec = {"source": data, "train_size": train_size, "val_size": val_size, "test_size": test_size,
                 "resolution": input_size, "split_seed": train_seed}
    return create_evaluator(space, data=data_spec, recipe={**recipe, "seed": train_seed, "device": device},
                            time_limit_s=timeout, threads=threads_per_worker(workers),
                            on_fit=on_fit, executor=executor, **caps)


def _executor(kind: str, address: str | None, gpus: float | None, cpus: float | None) -> dict | None:
    """The executor settings of ``create_evaluator`` (None: local); the Ray flags without --executor ray are refused."""
    if kind == "local":
        given = [f for f, v in (("--ray-address", address), ("--gpus-per-trial", gpus), ("--cpus-per-trial", cpus))
                 if v is not None]
        if given:
            raise UserError(f"{given[0]} is for --executor ray")
        return None
    return {"kind": kind, "address": address, "gpus_per_trial": gpus or 0.0, "cpus_per_trial": cpus or 1.0}


def _parse_workers(value: str) -> int | str:
    if str(value).strip().lower() == "auto":
        return "auto"
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise click.BadParameter(f"{value!r} is neither a number >= 1 nor auto", param_hint="'--workers'")
    return n


def _auto_workers(evaluator, store, study, llm_in_process: bool, quiet: bool) -> int:
    """``--workers auto`` (:func:`llmnas_local.gpu.auto_workers`), after the LLM is loaded (its memory is taken) and
    before any worker starts (the threads per worker follow)."""
    from llmnas_local.gpu import auto_workers, measured_peaks, threads_per_worker

    workers, why = auto_workers(evaluator, measured_peaks(store, study.recipe_hash), llm_in_process=llm_in_process)
    if hasattr(evaluator, "threads"):
        evaluator.threads = threads_per_worker(workers)
    if not quiet:
        click.echo(why, err=True)
    return workers


def _lookahead(lookahead: int | None, workers: int | str, llm_trains: bool) -> int:
    """``--lookahead``: by default 1 where proposing and training both take time (an LLM proposer, trainings) and
    one worker runs them, else 0; more workers already propose while others train."""
    if lookahead is None:
        return 1 if llm_trains and workers == 1 else 0
    if lookahead and workers != 1:
        raise UserError(f"--lookahead {lookahead} needs --workers 1 (with more workers the search already proposes "
                        f"while trainings run)")
    return lookahead


def _share_cores(evaluator, llm_in_process: bool) -> None:
    """With a lookahead the in-process LLM decodes while a training runs: half the cores each, not both all of them."""
    import os

    half = max(1, (os.cpu_count() or 1) // 2)
    if hasattr(evaluator, "threads") and evaluator.threads is None:
        evaluator.threads = half
    if llm_in_process:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) - half))


def _no_result_hint(space, timeout: float, caps: dict) -> str:
    """What to change when no architecture completed, for the errors that can cause it."""
    hints = [] if space.tabular else [f"a longer --timeout (now {timeout:g} s)",
                                      "shorter trainings (--train-size, --epochs, --input-size)"]
    if any(v is not None for v in caps.values()):
        hints.append("looser caps (--max-params-m, --max-flops-m)")
    return "; try " + ", ".join(hints) if hints else ""


def _objective(text: str):
    from llmnas_local.objective import parse_objective

    try:
        return parse_objective(text)
    except ValueError as e:
        raise UserError(f"--objective: {e}") from None


def _report(study, best, store: str, hint: str = "") -> None:
    from llmnas_local.records import TEST_ACC, VAL_ACC

    counts = study.counts()
    click.echo(f"run {study.run_id}: {study.num_evaluated} evaluations; " +
               ", ".join(f"{k} {v}" for k, v in counts.items()))
    goal = study.history.objective
    if best is None and counts["complete"] and not goal.is_accuracy:
        raise SearchError(f"no completed architecture is within the objective's budgets ({goal}); "
                          f"llmnas top {store} lists them all")
    if best is None:
        raise SearchError("no architecture completed an evaluation (" +
                          ", ".join(f"{k} {v}" for k, v in counts.items() if v and k != "complete") +
                          f"); the errors are in llmnas export {store}{hint}")
    m = best.metrics
    test = f", test_acc {m[TEST_ACC]:.2f}" if TEST_ACC in m else ""
    by = "validation" if goal.is_accuracy else goal.describe()
    click.echo(f"best (by {by}): val_acc {m[VAL_ACC]:.2f}{test}  {best.canonical}")
    click.echo(f"  hash {best.arch_hash}  (llmnas show {store} {best.arch_hash[:12]})")


class _Progress:
    """A tqdm bar over distinct evaluations, with the best validation accuracy and the invalid/duplicate counts, and
    on a GPU its utilisation and memory (read every 2 s in a thread)."""

    def __init__(self, study, budget: int, disable: bool):
        from tqdm import tqdm

        from llmnas_local.gpu import GpuSampler

        self.gpu = GpuSampler(getattr(study.evaluator, "device", "cpu") if not disable else "cpu", interval_s=2.0)

        self.bar = tqdm(total=budget, initial=min(study.num_evaluated, budget), unit="eval", disable=disable,
                        dynamic_ncols=True, file=sys.stderr)
        self.budget = budget

    def update(self, study, trial) -> None:
        from llmnas_local.gpu import describe
        from llmnas_local.records import VAL_ACC

        self.bar.n = min(study.num_evaluated, self.budget)
        best = study.best()
        c = study.counts()
        gpu = describe(self.gpu.latest)
        self.bar.set_postfix_str(
            (f"best val {best.metrics[VAL_ACC]:.2f}" if best else "best val -") + (f" {gpu}" if gpu else ""),
            refresh=False)
        self.bar.set_description(f"invalid {c['invalid']} dup {c['duplicate']} failed {c['failed'] + c['timeout']}",
                                 refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.gpu.close()
        self.bar.close()
