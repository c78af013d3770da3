"""``llmnas dsl``: print a grammar, check a string, sample strings."""
from __future__ import annotations

import random
import sys

import click

from llmnas_local.cli.errors import user_errors


def _space(name: str):
    from llmnas_local.dsl import get_space

    return get_space(name)


@click.group()
def dsl() -> None:
    """The architecture DSL of each search space."""


@dsl.command()
@click.argument("space")
@user_errors
def grammar(space: str) -> None:
    """Print the EBNF grammar of SPACE (the text that constrains decoding)."""
    click.echo(_space(space).grammar(), nl=False)


@dsl.command()
@click.argument("space")
@click.argument("text")
@click.option("--input-size", default=32, show_default=True, help="Input resolution to check against.")
@click.option("--in-chans", default=3, show_default=True)
@click.option("--num-classes", default=10, show_default=True)
@click.option("--max-params-m", type=float, default=None, help="Cap on parameters, millions.")
@click.option("--max-flops-m", type=float, default=None, help="Cap on FLOPs per image, millions.")
@user_errors
def check(space: str, text: str, input_size: int, in_chans: int, num_classes: int,
          max_params_m: float | None, max_flops_m: float | None) -> None:
    """Parse TEXT; print its canonical form, hash, parameters and FLOPs, or the error (exit code 2)."""
    from llmnas_local.builder import check_caps, profile_model
    from llmnas_local.dsl import Constraints, DslError, SemanticError

    sp = _space(space)
    constraints = Constraints(num_classes, in_chans, input_size, max_params_m, max_flops_m)
    try:
        spec = sp.parse(text)
        sp.check(spec, constraints)
        model = sp.build(spec, num_classes=num_classes, in_chans=in_chans, input_size=input_size)
        profile = profile_model(model, num_classes, in_chans, input_size)
        check_caps(profile, constraints)
    except DslError as e:
        click.echo(f"invalid: {e}", err=True)
        sys.exit(2)
    except SemanticError as e:
        click.echo(f"rejected: {e}", err=True)
        sys.exit(2)
    click.echo(f"canonical: {sp.canonical(spec)}")
    click.echo(f"hash:      {sp.arch_hash(spec)}")
    click.echo(f"params:    {profile.params_m:.6f} M")
    click.echo(f"flops:     {profile.flops_m:.3f} M (one {in_chans}x{input_size}x{input_size} image)")


@dsl.command()
@click.argument("space")
@click.option("-n", "count", default=5, show_default=True, help="How many strings.")
@click.option("--seed", default=0, show_default=True)
@user_errors
def sample(space: str, count: int, seed: int) -> None:
    """Print COUNT random strings of SPACE's language (grammar-driven sampler)."""
    sp, rng = _space(space), random.Random(seed)
    for _ in range(count):
        click.echo(sp.sample(rng))
