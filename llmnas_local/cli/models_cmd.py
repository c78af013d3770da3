"""``llmnas models``: the local models the project knows, and preparing the embedded one."""
from __future__ import annotations

import click


@click.group()
def models() -> None:
    """Local LLM weights: list them, prepare the embedded default."""
