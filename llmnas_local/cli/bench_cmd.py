"""``llmnas bench``: benchmark proposers x seeds on one space, on equal budgets of distinct evaluations."""
from __future__ import annotations

import sys

import click

from llmnas_local.cli.errors import UserError, user_errors


def _split_ints(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise click.BadParameter(f"expected integers separated by commas, got {text!r}") from None


@click.command()
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A TOML grid (benchmarks/grids/*.toml); the options below override its fields.")
@click.option("--name", default=None, help="Benchmark name: the results folder <results-dir>/<name>.")
@click.option("--proposer", "proposers", multiple=True, metavar="[ENTRY=]PROPOSER",
              help="An entry (repeatable): a registered proposer (random, evolution, llm), optionally named.")
@click.option("--setting", "settings", multiple=True, metavar="ENTRY.KEY=VALUE",
              help="A setting of an entry (repeatable), value as TOML: evolution.population=20, llm.model=\"smollm2\".")
@click.option("--seeds", default=None, help="A count (5: seeds 0-4), a range (0-99) or a list (1,4,7).")
@click.option("--budget", type=click.IntRange(min=1), default=None,
              help="Distinct evaluations per run (default: the largest of --budgets).")
@click.option("--budgets", default=None, help="Budgets the table reports, e.g. 10,30,100 (the default).")
@click.option("--space", type=click.Choice(["nb201", "cnn"]), default=None, help="Search space (default nb201).")
@click.option("--table", type=click.Path(dir_okay=False), default=None, help="nb201: the NAS-Bench-201 CSV.")
@click.option("--preset", default=None, help="nb201: cifar10, cifar100, cifar10-12ep or cifar100-12ep.")
@click.option("--distinct", type=click.Choice(["cell", "class"]), default=None,
              help="nb201: a query is a distinct cell (literature, default) or a distinct network class.")
@click.option("--data", default=None, help="cnn: the data set (digits, a folder, a .tar.gz, ...).")
@click.option("--recipe", "recipe", multiple=True, metavar="KEY=VALUE",
              help="cnn: a training setting (repeatable): epochs=1, lr=0.01, device=\"cpu\" ...")
@click.option("--max-params-m", type=float, default=None, help="Reject models above this many M parameters.")
@click.option("--max-flops-m", type=float, default=None, help="Reject models above this many M FLOPs per image.")
@click.option("--reference", default=None, help="Entry the others are compared with (default evolution; 'none').")
@click.option("--band", type=click.Choice(["std", "ci95"]), default=None,
              help="Band of the curve plot (default ci95: the 95% t-interval of the mean).")
@click.option("--results-dir", default="benchmarks/results", show_default=True, type=click.Path(file_okay=False),
              help="Where the results folder goes.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; print only the table.")
@click.option("--report-only", is_flag=True,
              help="Run nothing: write the report of <results-dir>/<name> again from its results.json.")
@user_errors
def bench(grid_file: str | None, name: str | None, proposers: tuple[str, ...], settings: tuple[str, ...],
          seeds: str | None, budget: int | None, budgets: str | None, space: str | None, table: str | None,
          preset: str | None, distinct: str | None, data: str | None, recipe: tuple[str, ...],
          max_params_m: float | None, max_flops_m: float | None, reference: str | None, band: str | None,
          results_dir: str, quiet: bool, report_only: bool) -> None:
    """Benchmark proposers x seeds on one space and evaluator; write <results-dir>/<name>/ (table.md, results.json,
    curves.png, distribution.png, provenance.json) and print the table.

    Every (entry, seed) is a resumable run in <results-dir>/<name>/store: the same command again adds nothing, more
    seeds or another entry run only what is missing.

    \b
      llmnas bench --grid benchmarks/grids/nb201-smoke.toml
      llmnas bench --proposer random --proposer evolution --seeds 5 --budget 100 \\
                   --table ../shared/data/nb201/nb201_cifar.csv --preset cifar10 --name c10-quick
    """
    import dataclasses

    from llmnas_local.bench import GridError, load_grid, run_bench
    from llmnas_local.bench.config import (SpaceConfig, apply_settings, config_from_dict, is_tabular, parse_seeds,
                                           parse_setting, resolve_path)

    try:
        raw_space: dict = {}
        for key, value in (("name", space), ("table", resolve_path(table, None)), ("preset", preset),
                           ("distinct", distinct), ("data", data), ("max_params_m", max_params_m),
                           ("max_flops_m", max_flops_m)):
            if value is not None:
                raw_space[key] = value
        if recipe:
            raw_space["recipe"] = {k: v for _, k, v in (parse_setting(f"recipe.{r}") for r in recipe)}
        if grid_file is not None:
            config = load_grid(grid_file)
            if proposers:
                config = config.replace(entries=tuple(_entry(p) for p in proposers))
            if raw_space:
                recipe_merged = {**config.space.recipe, **raw_space.pop("recipe", {})}
                config = config.replace(space=dataclasses.replace(config.space, recipe=recipe_merged, **raw_space))
        else:
            if not proposers:
                raise UserError("give --grid FILE or at least one --proposer")
            space_name = space or SpaceConfig.name
            default_name = "-".join([space_name, preset or "cifar10"] if is_tabular(space_name)
                                    else [space_name, (data or "digits").rsplit("/", 1)[-1]])
            config = config_from_dict({"name": default_name, "entries": [_entry(p).to_json() for p in proposers],
                                       "space": raw_space})
        changes: dict = {}
        if name is not None:
            changes["name"] = name
        if settings:
            changes["entries"] = apply_settings(config.entries, settings)
        if seeds is not None:
            changes["seeds"] = parse_seeds(seeds)
        if budgets is not None:
            changes["budgets"] = tuple(_split_ints(budgets) or ())
        if budget is not None:
            changes["max_budget"] = budget
        elif budgets is not None:
            changes["max_budget"] = max(changes["budgets"])
        if reference is not None:
            changes["reference"] = None if reference.lower() == "none" else reference
        elif proposers and config.reference not in {_entry(p).name for p in proposers}:
            changes["reference"] = "evolution" if "evolution" in {_entry(p).name for p in proposers} else None
        if band is not None:
            changes["band"] = band
        if changes:
            config = config.replace(**changes)
    except GridError as e:
        raise UserError(str(e))

    if report_only:
        from llmnas_local.bench.report import rebuild_report

        try:
            paths = rebuild_report(f"{results_dir}/{config.name}")
        except (OSError, GridError) as e:
            raise UserError(str(e))
        click.echo(paths["table"].read_text())
        return
    progress = _Progress(disable=quiet)
    try:
        result = run_bench(config, results_dir, progress=progress)
    except GridError as e:
        raise UserError(str(e))
    except KeyboardInterrupt:
        progress.close()
        click.echo(f"interrupted: finished trials are safe in {results_dir}/{config.name}/store; run the same "
                   f"command to resume", err=True)
        sys.exit(130)
    finally:
        progress.close()
    click.echo(result.paths["table"].read_text())
    if not quiet:
        click.echo(f"{len(result.executed)} run(s) executed in {result.run_s:.1f} s, report in "
                   f"{result.report_s:.1f} s; results in {result.out_dir}", err=True)


def _entry(text: str):
    from llmnas_local.bench.config import EntryConfig

    name, _, proposer = text.partition("=")
    return EntryConfig(name, proposer) if proposer else EntryConfig(text, text)


class _Progress:
    """A tqdm bar over the runs still to do."""

    def __init__(self, disable: bool):
        self.disable = disable
        self.bar = None

    def __call__(self, event: str, info: dict) -> None:
        if self.disable:
            return
        if event == "plan":
            from tqdm import tqdm

            click.echo(f"{info['total'] - info['todo']} of {info['total']} runs already done; "
                       f"running {info['todo']}", err=True)
            self.bar = tqdm(total=info["todo"], unit="run", dynamic_ncols=True, file=sys.stderr)
        elif event == "start" and self.bar is not None:
            self.bar.set_description(f"{info['entry']} seed {info['seed']}", refresh=False)
        elif event == "done" and self.bar is not None:
            self.bar.update(1)
        elif event == "backend":
            click.echo(f"loading {info['backend']} backend for {info['model']} (shared by its entries)", err=True)
        elif event == "stalled":
            click.echo(f"run {info['run_id']} stalled: {info['error']}", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
