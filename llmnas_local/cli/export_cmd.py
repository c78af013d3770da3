"""``llmnas export-model``: an architecture's weights as safetensors, ONNX or TorchScript, with a model card."""
from __future__ import annotations

import click

from llmnas_local.cli.errors import UserError, user_errors
from llmnas_local.cli.store_cmd import open_existing


@click.command("export-model")
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("arch", required=False)
@click.option("--best", is_flag=True, help="The architecture with the best validation accuracy.")
@click.option("--run", "run_id", default=None, help="Choose among the trials of this run only.")
@click.option("--format", "fmt", type=click.Choice(["safetensors", "onnx", "torchscript"]), required=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write into.")
@click.option("--untrained", is_flag=True,
              help="Without a final training, export freshly initialised weights (the card says so).")
@user_errors
def export_model(store: str, arch: str | None, best: bool, run_id: str | None, fmt: str, out: str,
                 untrained: bool) -> None:
    """Write the model of ARCH (a hash or unique prefix) or --best of STORE into OUT: the weights of its final
    training (llmnas train) in one format, and model_card.json / model_card.md. (llmnas export writes the trials.)"""
    from llmnas_local.final.export import export_model as export

    if (arch is None) == (not best):
        raise UserError("give either ARCH (a hash or a prefix of one) or --best" + (", not both" if best else ""))
    with open_existing(store, readonly=True) as st:
        result = export(st, arch, best=best, run_id=run_id, fmt=fmt, out=out, untrained=untrained)
    click.echo(f"wrote {result.path} ({result.card['weights']}) and {result.card_md.name}, {result.card_json.name}")
