"""Which backend, as one value: :class:`BackendSpec`, built once where the user's settings come in (the CLI's options,
a grid entry's settings) and handed on; :func:`create_backend` builds a backend from its parts.

Backends are shared by spec: equal specs name the same model under the same settings, so one loaded model serves
them all (the bench keeps one backend per spec). The spec keeps the model as the user named it (``smollm2``): trial
records and run settings store that name, never where the weights are on this machine.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Mapping

from llmnas_local.llm.base import BackendError, BaseBackend
from llmnas_local.llm.models import EMBEDDED, get_model_info
from llmnas_local.llm.openai_backend import OpenAIBackend
from llmnas_local.llm.transformers_backend import TransformersBackend
from llmnas_local.llm.vllm_server import VllmServerBackend

BACKENDS = {"transformers": TransformersBackend, "vllm": VllmServerBackend, "openai": OpenAIBackend}
DEFAULT_BACKEND = "transformers"
# Registry settings each backend takes (the rest of [<model>.settings] is for the others).
_BACKEND_SETTINGS = {"transformers": ("dtype",), "vllm": ("max_model_len", "gpu_memory_utilization", "dtype"),
                     "openai": ()}
_GENERATION_DEFAULTS = ("temperature", "top_p")
# The keys of a proposer's settings that say which backend (the rest configure the proposer).
SPEC_KEYS = ("llm", "model", "base_url", "backend_settings")


@dataclasses.dataclass(frozen=True, eq=False)
class BackendSpec:
    """What backend to create: ``kind`` ("transformers", "vllm" or "openai"), ``model`` (a registry name or a local
    folder, as the user wrote it; for "openai" the served name, None: the first the server lists), ``base_url``
    ("openai": the running server) and ``settings`` (the backend's own: ``python``, ``timeout_s``, ``dtype``...).
    Equal specs (``key``) share one backend."""

    kind: str = DEFAULT_BACKEND
    model: str | None = EMBEDDED
    base_url: str | None = None
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", None if self.model is None else str(self.model))
        object.__setattr__(self, "settings", dict(self.settings or {}))

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> tuple["BackendSpec", dict[str, Any]]:
        """Split a proposer's settings (a grid entry's, ``create_proposer``'s keywords) into the spec their ``llm``,
        ``model``, ``base_url`` and ``backend_settings`` give, and the rest."""
        rest = {k: v for k, v in settings.items() if k not in SPEC_KEYS}
        spec = cls(str(settings.get("llm") or DEFAULT_BACKEND), settings.get("model", EMBEDDED),
                   settings.get("base_url"), settings.get("backend_settings") or {})
        return spec, rest

    @property
    def key(self) -> str:
        """Canonical JSON of the spec: what two specs must share to share a backend."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), default=str)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BackendSpec) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def backend_class(self) -> type[BaseBackend]:
        if self.kind not in BACKENDS:
            raise BackendError(f"unknown backend {self.kind!r} (choose from {', '.join(BACKENDS)})")
        return BACKENDS[self.kind]

    def options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`create_backend` besides kind and model."""
        return {**self.settings, **({"base_url": self.base_url} if self.base_url is not None else {})}

    def create(self) -> BaseBackend:
        return create_backend(self.kind, self.model, **self.options())

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "model": self.model, "base_url": self.base_url, "settings": dict(self.settings)}


def create_backend(kind: str, model: str | None = None, **settings: Any) -> BaseBackend:
    """A backend by kind: "transformers" (in-process), "vllm" (managed server) or "openai" (running server, needs
    ``base_url=``). ``model``: a registry name or a local folder (for "openai", the served model name; default: the
    first one the server lists). Registry settings of the model are the defaults; ``settings`` override them."""
    if kind not in BACKENDS:
        raise BackendError(f"unknown backend {kind!r} (choose from {', '.join(BACKENDS)})")
    if model is None and kind != "openai":
        model = EMBEDDED
    info = get_model_info(model) if model is not None else None
    if info is not None:
        merged = {k: v for k, v in info.settings.items() if k in _BACKEND_SETTINGS[kind]}
        defaults = {k: info.settings[k] for k in _GENERATION_DEFAULTS if k in info.settings}
        merged.update(settings)
        merged["defaults"] = {**defaults, **(settings.get("defaults") or {})}
        settings = merged
    if kind == "openai":
        if "base_url" not in settings:
            raise BackendError("--llm openai needs the URL of a running server: --llm-url http://127.0.0.1:PORT")
        return OpenAIBackend(settings.pop("base_url"), model, **settings)
    return BACKENDS[kind](model, **settings)
