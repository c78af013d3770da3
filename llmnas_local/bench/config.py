"""What a benchmark runs: named proposer entries x seeds on one space and evaluator, up to a budget of distinct
evaluations, reported at several budgets. Read from a TOML grid file or built from command options.

A grid file (``benchmarks/grids/*.toml``)::

    name = "nb201-baselines-c10"       # the results folder: <results dir>/<name>/
    seeds = 100                        # 0..99; or a list: [0, 1, 5]
    budgets = [10, 30, 100, 300]       # distinct evaluations at which the table reports (default 10, 30, 100)
    max_budget = 300                   # each run goes this far (default: the largest budget)
    reference = "evolution"            # paired comparisons are against this entry (default: evolution if present)
    more_references = ["llm"]          # and against these too, a table each (an ablation grid: the full proposer)
    band = "ci95"                      # curve plot band: "ci95" (95% t-interval of the mean) or "std"
    workers = 1                        # evaluations of a run in flight at once
    executor = {kind = "ray", address = "auto", cpus_per_trial = 1, gpus_per_trial = 0.25}   # or "local" (default)
    max_stall = 200                    # a run stops (stalled) after this many known or invalid proposals in a row

    [space]
    name = "nb201"                     # nb201: table look-ups; cnn: trainings
    table = "../shared/data/nb201/nb201_cifar.csv"
    preset = "cifar10"                 # cifar10, cifar100, cifar10-12ep, cifar100-12ep, imagenet16-120, none
    distinct = "cell"                  # nb201: what a distinct query is (see below)
    # nb201, any table: val_column, test_column, params_column, flops_column override the preset's (preset = "none":
    #      give all four); num_classes, input_size describe the task of a validation column no preset has
    # cnn: data = "digits" or {source = "digits", train_size = 512, ...} (DataSpec fields),
    #      recipe = {epochs = 1, lr = 0.01, ...} (TrainingConfig fields), evaluator = {time_limit_s = 600, threads = 2}
    # both: max_params_m, max_flops_m

    [[entries]]
    name = "random"
    proposer = "random"                # a registered proposer: random, evolution, llm

    [[entries]]
    name = "evolution"
    proposer = "evolution"
    settings = {population = 10, tournament = 3}
    lookahead = 1                      # optional (workers = 1): Search(lookahead=...); > 0 adds -la<N> to run ids

    [published.random]                 # optional: numbers to compare with ("budget" = [mean, std, seeds])
    "100" = [93.80, 0.26, 300]

Relative paths (``table``, ``data``) are taken from the current directory if they exist there, else from the grid
file's folder; ``$VARS`` and ``~`` are expanded. ``distinct`` (nb201 only): ``"cell"`` counts distinct cell strings
as the literature does (the 15,625 rows of the table); ``"class"`` counts distinct networks (the space's canonical
form: 5,260 classes), the project's own rule, which answers an equivalent cell as a duplicate.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from llmnas_local.evaluators.factory import TABLE_OPTIONS as TABLE_KEYS  # tabular spaces (nb201)

DEFAULT_BUDGETS = (10, 30, 100)
DISTINCT = ("cell", "class")
BANDS = ("std", "ci95")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class GridError(ValueError):
    """A grid that cannot run: one line that names the field."""


def is_tabular(space: str) -> bool:
    """Whether the space named ``space`` is evaluated by table look-up (False for a name no space has)."""
    from llmnas_local.dsl import get_space, list_spaces

    return space in list_spaces() and get_space(space).tabular


@dataclasses.dataclass(frozen=True)
class EntryConfig:
    """One proposer of the grid: ``create_proposer(proposer, **settings)`` under the name ``name``."""

    name: str
    proposer: str
    settings: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    lookahead: int = 0                        # Search(lookahead=...): proposals made while an evaluation runs

    @property
    def uses_llm(self) -> bool:
        """An LLM proposer, or settings that name an LLM backend kind or a model (the runner gives it a backend)."""
        from llmnas_local.proposers import LLM_PROPOSERS

        return self.proposer in LLM_PROPOSERS or "llm" in self.settings or "model" in self.settings

    def to_json(self) -> dict[str, Any]:
        d = {"name": self.name, "proposer": self.proposer, "settings": self.settings}
        return {**d, "lookahead": self.lookahead} if self.lookahead else d


@dataclasses.dataclass(frozen=True)
class SpaceConfig:
    """The space and its evaluator, shared by every run of the grid."""

    name: str = "nb201"
    table: str | None = None                  # nb201: the NAS-Bench-201 CSV
    preset: str = "cifar10"                   # nb201: the table protocol ("none": the four columns below)
    distinct: str = "cell"                    # nb201: "cell" (literature) or "class" (canonical networks)
    val_column: str | None = None             # nb201: columns that override the preset's
    test_column: str | None = None
    params_column: str | None = None
    flops_column: str | None = None
    num_classes: int | None = None            # nb201: the task of a validation column no preset has (for prompts)
    input_size: int | None = None
    data: str | dict[str, Any] = "digits"     # cnn: the data set, or a table of DataSpec fields (source = ...)
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)      # cnn: TrainingConfig fields
    evaluator: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)   # cnn: time_limit_s, threads
    max_params_m: float | None = None
    max_flops_m: float | None = None

    def __post_init__(self) -> None:
        given = [k for k in TABLE_KEYS if getattr(self, k) is not None]
        if not is_tabular(self.name):
            if given:
                raise GridError(f"space.{given[0]} is for nb201 (table look-ups), not {self.name}")
            return
        from llmnas_local.evaluators.tabular import PRESETS

        if self.preset not in (*PRESETS, "none"):
            raise GridError(f"space.preset must be one of {', '.join(PRESETS)} or none, got {self.preset!r}")
        for k in given:
            v = getattr(self, k)
            if k.endswith("_column") and not (isinstance(v, str) and v):
                raise GridError(f"space.{k}: expected a column name, got {v!r}")
            if not k.endswith("_column") and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise GridError(f"space.{k}: expected a positive integer, got {v!r}")

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if is_tabular(self.name):
            for k in ("data", "recipe", "evaluator", *(k for k in TABLE_KEYS if d[k] is None)):
                d.pop(k)
        else:
            for k in ("table", "preset", "distinct", *TABLE_KEYS):
                d.pop(k)
        return d


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    name: str
    entries: tuple[EntryConfig, ...]
    seeds: tuple[int, ...]
    space: SpaceConfig
    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    max_budget: int = 100
    reference: str | None = None              # None: no paired comparisons
    more_references: tuple[str, ...] = ()     # further entries the others are compared with, a table each
    band: str = "ci95"
    max_stall: int = 200                      # Search(max_stall=...): known or invalid proposals in a row
    workers: int = 1                          # evaluations of a run in flight (Search.run(workers=...))
    executor: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)   # ExecutorConfig fields ({}: local)
    bootstrap_resamples: int = 10_000
    bootstrap_seed: int = 0
    published: dict[str, dict[int, tuple[float, float, int]]] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise GridError(f"name {self.name!r}: use letters, digits and . _ + - (it names a folder)")
        if not self.entries:
            raise GridError("the grid has no entries (give at least one proposer)")
        names = [e.name for e in self.entries]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise GridError(f"entry names must be unique: {', '.join(dup)} repeated")
        for e in self.entries:
            if not _NAME.match(e.name):
                raise GridError(f"entry name {e.name!r}: use letters, digits and . _ + - (it names runs)")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise GridError(f"seeds must be distinct non-negative integers, got {list(self.seeds)}")
        if self.max_budget < 1 or any(b < 1 for b in self.budgets):
            raise GridError("budgets must be positive")
        for ref in self.references:
            if ref not in names:
                raise GridError(f"reference {ref!r} is not an entry of the grid ({', '.join(names)})")
        if len(set(self.references)) != len(self.references):
            raise GridError(f"references repeat: {', '.join(self.references)}")
        if self.band not in BANDS:
            raise GridError(f"band must be one of {', '.join(BANDS)}, got {self.band!r}")
        from llmnas_local.dsl import list_spaces

        if self.space.name not in list_spaces():
            raise GridError(f"space must be one of {', '.join(list_spaces())}, got {self.space.name!r}")
        if self.space.distinct not in DISTINCT:
            raise GridError(f"space.distinct must be one of {', '.join(DISTINCT)}, got {self.space.distinct!r}")
        if is_tabular(self.space.name) and not self.space.table:
            raise GridError(f"space {self.space.name} evaluates by table look-up: give its table (the NAS-Bench-201 "
                            f"CSV)")
        if self.max_stall < 1:
            raise GridError("max_stall must be at least 1")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise GridError(f"workers must be a positive integer, got {self.workers!r}")
        if self.workers > 1 and any(e.lookahead for e in self.entries):
            raise GridError("an entry's lookahead needs workers = 1")
        from llmnas_local.evaluators.ray_executor import ExecutorConfig

        try:
            ExecutorConfig.from_mapping(self.executor)
        except (TypeError, ValueError) as e:
            raise GridError(f"executor: {e}") from None
        if self.bootstrap_resamples < 100:
            raise GridError("bootstrap_resamples must be at least 100")

    @property
    def references(self) -> tuple[str, ...]:
        """The entries the others are compared with, the main reference first."""
        return ((self.reference,) if self.reference is not None else ()) + tuple(self.more_references)

    @property
    def report_budgets(self) -> tuple[int, ...]:
        """The budgets of the table: those up to the max budget, and the max budget itself."""
        return tuple(sorted({b for b in self.budgets if b <= self.max_budget} | {self.max_budget}))

    def run_id(self, entry: EntryConfig, seed: int) -> str:
        return f"{entry.name}-s{seed}" + (f"-la{entry.lookahead}" if entry.lookahead else "")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "entries": [e.to_json() for e in self.entries], "seeds": list(self.seeds),
                "space": self.space.to_json(), "budgets": list(self.report_budgets), "max_budget": self.max_budget,
                "reference": self.reference, "more_references": list(self.more_references), "band": self.band,
                "max_stall": self.max_stall, "workers": self.workers, "executor": dict(self.executor),
                "bootstrap_resamples": self.bootstrap_resamples, "bootstrap_seed": self.bootstrap_seed,
                "published": {e: {str(b): list(v) for b, v in p.items()} for e, p in self.published.items()}}

    def replace(self, **changes: Any) -> "BenchConfig":
        return dataclasses.replace(self, **changes)


# -- building a config ----------------------------------------------------------------------------------------------
def parse_seeds(value: Any) -> tuple[int, ...]:
    """``5`` -> 0..4; ``[0, 3]`` -> those; ``"0-9"`` -> 0..9; ``"1,4,7"`` -> those."""
    if isinstance(value, bool):
        raise GridError(f"seeds: expected a count or a list, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise GridError(f"seeds: a count must be >= 1, got {value}")
        return tuple(range(value))
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_seeds(int(text))
        if re.fullmatch(r"\d+-\d+", text):
            lo, hi = map(int, text.split("-"))
            if hi < lo:
                raise GridError(f"seeds: empty range {text!r}")
            return tuple(range(lo, hi + 1))
        try:
            return tuple(int(s) for s in text.split(",") if s.strip())
        except ValueError:
            raise GridError(f"seeds: expected a count, a range 'A-B' or a list 'A,B,C', got {value!r}") from None
    if isinstance(value, (list, tuple)) and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        return tuple(value)
    raise GridError(f"seeds: expected a count or a list of integers, got {value!r}")


def resolve_path(text: str | None, base: Path | None) -> str | None:
    """Expand ``$VARS`` and ``~``; a relative path is taken from the current directory if it exists there, else
    from ``base`` (the grid file's folder)."""
    if text is None:
        return None
    path = Path(os.path.expanduser(os.path.expandvars(str(text))))
    if path.is_absolute() or path.exists() or base is None:
        return os.path.normpath(path)
    return os.path.normpath(base / path) if (base / path).exists() else str(path)


def _entries(raw: Any) -> tuple[EntryConfig, ...]:
    if not isinstance(raw, list):
        raise GridError("entries: expected a list of tables ([[entries]] name = ..., proposer = ...)")
    out = []
    for i, e in enumerate(raw):
        if not isinstance(e, Mapping):
            raise GridError(f"entries[{i}]: expected a table")
        unknown = set(e) - {"name", "proposer", "settings", "lookahead"}
        if unknown:
            raise GridError(f"entries[{i}]: unknown key(s) {', '.join(sorted(unknown))} (name, proposer, settings, "
                            f"lookahead)")
        lookahead = e.get("lookahead", 0)
        if not isinstance(lookahead, int) or isinstance(lookahead, bool) or lookahead < 0:
            raise GridError(f"entries[{i}].lookahead: expected an integer >= 0, got {lookahead!r}")
        proposer = e.get("proposer") or e.get("name")
        if not isinstance(proposer, str):
            raise GridError(f"entries[{i}]: needs a proposer (a registry name)")
        settings = e.get("settings", {})
        if not isinstance(settings, Mapping):
            raise GridError(f"entries[{i}].settings: expected a table")
        out.append(EntryConfig(str(e.get("name", proposer)), proposer, dict(settings), lookahead))
    return tuple(out)


def _space(raw: Any, base: Path | None) -> SpaceConfig:
    if not isinstance(raw, Mapping):
        raise GridError("space: expected a table ([space] name = \"nb201\", ...)")
    fields = {f.name for f in dataclasses.fields(SpaceConfig)}
    unknown = set(raw) - fields
    if unknown:
        raise GridError(f"space: unknown key(s) {', '.join(sorted(unknown))} ({', '.join(sorted(fields))})")
    d = dict(raw)
    d["table"] = resolve_path(d.get("table"), base)
    data = d.get("data")
    if isinstance(data, Mapping):
        d["data"] = dict(data)
        data = d["data"].get("source")
    if isinstance(data, str) and ("/" in data or data.startswith(("~", "$"))):
        if isinstance(d["data"], dict):
            d["data"]["source"] = resolve_path(data, base)
        else:
            d["data"] = resolve_path(data, base)
    return SpaceConfig(**d)


def _published(raw: Any) -> dict[str, dict[int, tuple[float, float, int]]]:
    if not isinstance(raw, Mapping):
        raise GridError("published: expected a table of entries")
    out: dict[str, dict[int, tuple[float, float, int]]] = {}
    for entry, rows in raw.items():
        if not isinstance(rows, Mapping):
            raise GridError(f"published.{entry}: expected budget = [mean, std, seeds]")
        out[entry] = {}
        for b, v in rows.items():
            if not (isinstance(v, list) and len(v) == 3 and str(b).isdigit()):
                raise GridError(f"published.{entry}.{b}: expected \"budget\" = [mean, std, seeds]")
            out[entry][int(b)] = (float(v[0]), float(v[1]), int(v[2]))
    return out


_TOP = {"name", "entries", "seeds", "space", "budgets", "max_budget", "reference", "more_references", "band",
        "max_stall", "workers", "executor", "bootstrap_resamples", "bootstrap_seed", "published"}


def config_from_dict(raw: Mapping[str, Any], base: Path | None = None, default_name: str | None = None) -> BenchConfig:
    unknown = set(raw) - _TOP
    if unknown:
        raise GridError(f"unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(_TOP))}")
    entries = _entries(raw.get("entries", []))
    budgets = tuple(int(b) for b in raw.get("budgets", DEFAULT_BUDGETS))
    max_budget = int(raw.get("max_budget", max(budgets) if budgets else 100))
    names = [e.name for e in entries]
    reference = raw.get("reference", "evolution" if "evolution" in names else None)
    if reference == "":
        reference = None
    more = raw.get("more_references", [])
    if not (isinstance(more, list) and all(isinstance(m, str) for m in more)):
        raise GridError(f"more_references: expected a list of entry names, got {more!r}")
    return BenchConfig(name=str(raw.get("name") or default_name or "bench"), entries=entries,
                       seeds=parse_seeds(raw.get("seeds", 3)), space=_space(raw.get("space", {}), base),
                       budgets=budgets, max_budget=max_budget, reference=reference, more_references=tuple(more),
                       band=raw.get("band", "ci95"),
                       max_stall=int(raw.get("max_stall", 200)), workers=raw.get("workers", 1),
                       executor=_executor(raw.get("executor", {})),
                       bootstrap_resamples=int(raw.get("bootstrap_resamples", 10_000)),
                       bootstrap_seed=int(raw.get("bootstrap_seed", 0)), published=_published(raw.get("published", {})))


def _executor(raw: Any) -> dict[str, Any]:
    """A grid's ``executor``: a kind ("local", "ray") or a table of ExecutorConfig fields."""
    if isinstance(raw, str):
        return {"kind": raw}
    if not isinstance(raw, Mapping):
        raise GridError(f"executor: expected a kind or a table (kind = \"ray\", address = ...), got {raw!r}")
    return dict(raw)


def load_grid(path: str | os.PathLike) -> BenchConfig:
    """A grid from a TOML file; the name defaults to the file's stem."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except OSError as e:
        raise GridError(f"cannot read grid {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise GridError(f"{path}: not valid TOML: {e}") from None
    try:
        return config_from_dict(raw, base=path.resolve().parent, default_name=path.stem)
    except GridError as e:
        raise GridError(f"{path}: {e}") from None
    except (TypeError, ValueError) as e:
        raise GridError(f"{path}: {' '.join(str(e).split())}") from None


def parse_setting(text: str) -> tuple[str, str, Any]:
    """``ENTRY.KEY=VALUE`` -> (entry, key, value); the value is read as TOML (``4``, ``true``, ``"x"``), else as
    text."""
    m = re.fullmatch(r"([^.=\s]+)\.([^=\s]+)=(.*)", text.strip())
    if not m:
        raise GridError(f"setting {text!r}: expected ENTRY.KEY=VALUE (e.g. evolution.population=20)")
    entry, key, value = m.groups()
    try:
        parsed = tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value
    return entry, key, parsed


def apply_settings(entries: Iterable[EntryConfig], settings: Iterable[str]) -> tuple[EntryConfig, ...]:
    entries = list(entries)
    by_name = {e.name: i for i, e in enumerate(entries)}
    for text in settings:
        name, key, value = parse_setting(text)
        if name not in by_name:
            raise GridError(f"setting {text!r}: no entry named {name!r} ({', '.join(by_name)})")
        e = entries[by_name[name]]
        entries[by_name[name]] = dataclasses.replace(e, settings={**e.settings, key: value})
    return tuple(entries)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
