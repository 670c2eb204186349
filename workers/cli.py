"""The ``workers`` command for operators. Subcommands are added as the package grows."""

from __future__ import annotations

import click

from workers import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, invoke_without_command=True)
@click.version_option(__version__, prog_name="workers")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Move Kafka records into Celery alarm pipelines, and operate them."""
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())
