"""The ``mlengine`` command. Each command group lives in its own module, imported lazily.

Start-up time matters (``local train`` promises little overhead over ``python -m``), so a
group's module is imported only when that group is invoked or help lists it.
"""

from __future__ import annotations

import importlib
import sys

import click

from mlengine import __version__
from mlengine.cli.errors import run_cli

#: command name -> "module:attribute" of its click group or command.
COMMANDS: dict[str, str] = {
    "jobs": "mlengine.cli.jobs:jobs",
    "local": "mlengine.cli.local:local",
    "models": "mlengine.cli.models:models",
    "operations": "mlengine.cli.operations:operations",
    "predict": "mlengine.cli.predict:predict",
    "serve": "mlengine.cli.serve:serve",
    "server": "mlengine.cli.server:server",
    "versions": "mlengine.cli.versions:versions",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlengine")
def cli() -> None:
    """mlengine: train, tune, deploy and serve models on your own machines.

    Mirrors `gcloud ml-engine`: `mlengine local train …` runs a trainer package here;
    `mlengine models`, `versions` and `predict` deploy models and ask them.
    """


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: runs the CLI and turns errors into exit codes."""
    sys.exit(run_cli(cli, argv))
