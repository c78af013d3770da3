"""llmnas_local: offline neural architecture search driven by a local open-weight LLM.

Data flow, one package each: proposers -> dsl -> builder -> evaluators -> store -> memory -> prompts.
"""
import os as _os

# Offline by construction: the hub libraries never reach the network from this process or its children.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    _os.environ.setdefault(_var, "1")
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
_os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
_os.environ.setdefault("DO_NOT_TRACK", "1")
# Spinning OpenMP threads steal the cores that training workers and the LLM share: under load, decoding SmolLM2 was
# 2-5x slower and erratic with the default (benchmarks/bench_llm.py). Must be set before torch is imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
