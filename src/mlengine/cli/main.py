"""The ``mlengine`` command. Each command group lives in its own module."""

from __future__ import annotations

import sys

import click

from mlengine import __version__
from mlengine.cli.errors import run_cli
from mlengine.cli.local import local


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlengine")
def cli() -> None:
    """mlengine: train, tune, deploy and serve models on your own machines.

    Mirrors `gcloud ml-engine`: `mlengine local train …` runs a trainer package here.
    """


cli.add_command(local)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the CLI and turns errors into exit codes."""
    sys.exit(run_cli(cli, argv))
