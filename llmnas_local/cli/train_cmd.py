"""``llmnas train``: train an architecture of a store fully and record the result beside its trials."""
from __future__ import annotations

import sys

import click

from llmnas_local.cli.errors import SearchError, UserError, ignore_further_interrupts, user_errors
from llmnas_local.cli.store_cmd import open_existing


@click.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("arch", required=False)
@click.option("--best", is_flag=True, help="The architecture with the best validation accuracy (of --run, or of "
                                           "every run when they share one recipe).")
@click.option("--run", "run_id", default=None, help="Choose among the trials of this run only.")
@click.option("--data", default=None, help="The data the search used [default: found by its fingerprint: digits, or "
                                           "the decoded-data cache]; nb201 runs: the images to train on.")
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=128, show_default=True, type=click.IntRange(min=2))
@click.option("--lr", default=0.05, show_default=True, type=float, help="SGD (Nesterov) learning rate, cosine to 0.")
@click.option("--weight-decay", default=5e-4, show_default=True, type=float, help="On conv and linear weights.")
@click.option("--label-smoothing", default=0.1, show_default=True, type=float)
@click.option("--augment", type=click.Choice(["auto", "crop-flip", "crop", "none"]), default="auto",
              show_default=True, help="auto: random crop and flip; crop only on digits.")
@click.option("--seed", default=0, show_default=True, help="Initialisation, batch order and augmentation.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto (cuda when present).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16"]), default="float32", show_default=True)
@click.option("--train-size", default=None, type=click.IntRange(min=1),
              help="Train on the first N images of the training split only (a quick run) [default: all].")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@user_errors
def train(store: str, arch: str | None, best: bool, run_id: str | None, data: str | None, epochs: int,
          batch_size: int, lr: float, weight_decay: float, label_smoothing: float, augment: str, seed: int,
          device: str, dtype: str, train_size: int | None, quiet: bool) -> None:
    """Train ARCH (a hash or unique prefix) or --best of STORE fully: checkpoints every epoch (run the same command
    to resume), weights selected on validation, test scored once; the result is stored with the architecture
    (llmnas top, llmnas show, llmnas export-model)."""
    from llmnas_local.evaluators.proxy import Diverged
    from llmnas_local.final import FinalConfig, train_final
    from llmnas_local.records import TEST_ACC, VAL_ACC

    if (arch is None) == (not best):
        raise UserError("give either ARCH (a hash or a prefix of one) or --best" + (", not both" if best else ""))
    config = FinalConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                         label_smoothing=label_smoothing, augment=augment, seed=seed, device=device, dtype=dtype,
                         train_size=train_size)
    log = (lambda s: None) if quiet else (lambda s: click.echo(s, err=True))
    with open_existing(store) as st:
        try:
            record = train_final(st, arch, best=best, run_id=run_id, data=data, config=config, log=log)
        except Diverged as e:
            raise SearchError(str(e))
        except KeyboardInterrupt:
            ignore_further_interrupts()
            click.echo("interrupted: the last epoch's checkpoint is safe; run the same command to resume", err=True)
            sys.exit(130)
    m = record.metrics
    click.echo(f"final: val_acc {m[VAL_ACC]:.2f} (epoch {record.best_epoch} of {len(record.history)}), test_acc "
               f"{m[TEST_ACC]:.2f}  {record.canonical}")
    click.echo(f"  hash {record.arch_hash}  (llmnas export-model {store} {record.arch_hash[:12]} --format onnx "
               f"--out DIR)")
