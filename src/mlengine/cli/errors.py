"""The one place where errors become messages and exit codes."""

from __future__ import annotations

import click

from mlengine.domain.errors import MlEngineError


def run_cli(command: click.Command, argv: list[str] | None) -> int:
    """Run ``command``; print an :class:`MlEngineError` as ``ERROR: (CODE) message``."""
    try:
        result = command.main(args=argv, prog_name="mlengine", standalone_mode=False)
    except MlEngineError as exc:
        click.echo(f"ERROR: ({exc.code.value}) {exc.message}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    return int(result) if isinstance(result, int) else 0
