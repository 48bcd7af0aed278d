"""What every server-backed command shares: the connection options and ``--format`` rendering.

* ``--project`` and ``--server`` (:func:`connection_options`) are accepted on a group and on
  each of its commands (``mlengine jobs --project p list`` = ``mlengine jobs list --project p``);
  unset, they come from :class:`~mlengine.config.Settings` (``MLENGINE_PROJECT``,
  ``MLENGINE_SERVER``, else a local server started on first use).
* ``--format`` (:func:`format_option`) takes ``json``, ``yaml``, ``table``, ``table(f1,f2)``
  or ``value(f1,f2)``. json and yaml print the wire form (what the REST API returns);
  ``table`` prints the command's columns, sized to the terminal; ``value`` prints the named
  fields (dotted paths such as ``trainingInput.scaleTier``) tab-separated, one line per
  resource, lists joined by ``;``.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from mlengine.client.sdk import Client

F = TypeVar("F", bound=Callable[..., Any])
Resource = Mapping[str, Any]

FORMATS = ("json", "yaml", "table", "value")
_CLIENT_KEY = "mlengine.client"
_FORMAT_PATTERN = re.compile(r"^(?P<kind>[a-z]+)(?:\((?P<fields>[^()]*)\))?$")


# -- connection ------------------------------------------------------------------------


@dataclass
class Connection:
    """``--project`` / ``--server`` as given on the command line (None = from settings)."""

    project: str | None = None
    server: str | None = None


def _remember(attribute: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is not None:
            setattr(ctx.ensure_object(Connection), attribute, value)

    return callback


def connection_options(command: F) -> F:
    """Add ``--project`` and ``--server`` to a group or command (a command's value wins)."""
    command = click.option(
        "--server",
        metavar="URL",
        default=None,
        expose_value=False,
        callback=_remember("server"),
        help="Server URL (default: $MLENGINE_SERVER, else a local server started on demand).",
    )(command)
    return click.option(
        "--project",
        default=None,
        expose_value=False,
        callback=_remember("project"),
        help="Project (default: $MLENGINE_PROJECT, else 'mlengine').",
    )(command)


def open_client(ctx: click.Context) -> Client:
    """The client of this invocation's server and project (one per command, closed when
    the command ends)."""
    from mlengine.client.sdk import Client
    from mlengine.config import Settings

    cached = ctx.meta.get(_CLIENT_KEY)
    if isinstance(cached, Client):
        return cached
    connection = ctx.find_object(Connection) or Connection()
    client = Client(connection.server, project=connection.project, settings=Settings.from_env())
    ctx.meta[_CLIENT_KEY] = ctx.with_resource(client)
    return client


# -- formats ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputFormat:
    """A parsed ``--format``: its kind and, for ``table(...)``/``value(...)``, the fields."""

    kind: str
    fields: tuple[str, ...] = ()


def parse_format(text: str) -> OutputFormat:
    """Parse ``json``, ``yaml``, ``table``, ``table(a,b.c)`` or ``value(a,b.c)``."""
    match = _FORMAT_PATTERN.match(text.strip())
    if not match or match["kind"] not in FORMATS:
        raise click.BadParameter(
            f"{text!r} is not a format; use json, yaml, table, table(FIELD,…) or value(FIELD,…)."
        )
    fields = tuple(f.strip() for f in (match["fields"] or "").split(",") if f.strip())
    if fields and match["kind"] in ("json", "yaml"):
        raise click.BadParameter(f"{match['kind']} takes no field list.")
    return OutputFormat(match["kind"], fields)


def format_option(default: str = "yaml") -> Callable[[F], F]:
    """The ``--format`` option; the command receives an :class:`OutputFormat` as ``output``."""

    def callback(_ctx: click.Context, _param: click.Parameter, value: str) -> OutputFormat:
        return parse_format(value)

    return click.option(
        "--format",
        "output",
        default=default,
        show_default=True,
        metavar="FORMAT",
        callback=callback,
        help="json, yaml, table, table(FIELD,…) or value(FIELD,…); FIELD is a dotted path "
        "such as trainingInput.scaleTier.",
    )


@dataclass(frozen=True)
class Column:
    """A table column: its header, the dotted path of its value, an optional formatter and
    what to show when the value is absent."""

    header: str
    path: str
    show: Callable[[Any], str] | None = None
    missing: str = ""

    def text(self, resource: Resource) -> str:
        value = field_value(resource, self.path)
        if value is None:
            return self.missing
        if self.show is not None and value is not None:
            return self.show(value)
        return cell_text(value)


def field_value(resource: Resource, path: str) -> Any:
    """The value at dotted ``path`` (``trainingInput.scaleTier``), None where it is missing."""
    value: Any = resource
    for part in path.split("."):
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def cell_text(value: Any) -> str:
    """How a value reads in a table or ``value(...)``: lists joined by ';', maps as k=v."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return ";".join(cell_text(v) for v in value)
    if isinstance(value, Mapping):
        return ",".join(f"{k}={cell_text(v)}" for k, v in value.items())
    return str(value)


def local_time(value: Any) -> str:
    """An RFC 3339 timestamp as local time to the second, as gcloud's tables show it."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return str(value)
    return moment.astimezone().strftime("%Y-%m-%dT%H:%M:%S")


def header_for(path: str) -> str:
    """``createTime`` -> ``CREATE_TIME``, ``trainingInput.scaleTier`` -> ``SCALE_TIER``,
    ``consumedMLUnits`` -> ``CONSUMED_ML_UNITS``."""
    last = path.rsplit(".", 1)[-1]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", last).upper()


# -- rendering -------------------------------------------------------------------------


def render(
    data: Resource | Sequence[Resource],
    output: OutputFormat,
    *,
    columns: Sequence[Column] = (),
) -> None:
    """Print one resource or a list of them in ``output``; ``columns`` serve ``table``."""
    if output.kind == "json":
        import orjson

        text = orjson.dumps(_plain(data), option=orjson.OPT_INDENT_2).decode()
        click.echo(text)
    elif output.kind == "yaml":
        click.echo(yaml_text(data), nl=False)
    else:
        rows = [data] if isinstance(data, Mapping) else list(data)
        chosen = [Column(header_for(f), f) for f in output.fields] or list(columns)
        if not chosen:
            raise click.UsageError(f"--format {output.kind} needs fields: {output.kind}(a,b).")
        if not rows:
            click.echo("Listed 0 items.", err=True)
        elif output.kind == "value":
            for row in rows:
                click.echo("\t".join(c.text(row) for c in chosen))
        else:
            print_table([c.header for c in chosen], [[c.text(r) for c in chosen] for r in rows])


def yaml_text(data: Any) -> str:
    """Block-style YAML of the wire form, keys in API order."""
    import yaml

    return str(
        yaml.safe_dump(_plain(data), sort_keys=False, default_flow_style=False, allow_unicode=True)
    )


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None
) -> None:
    """A borderless table like gcloud's: upper-case headers, columns two spaces apart.

    On a terminal it fits the terminal's width (long cells wrap); piped, it is never cut.
    """
    from rich.console import Console
    from rich.table import Table

    terminal = sys.stdout.isatty()
    width = shutil.get_terminal_size().columns if terminal else 100_000
    console = Console(
        width=width,
        force_terminal=terminal,
        no_color=not terminal,
        highlight=False,
        soft_wrap=False,
    )
    table = Table(
        box=None,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1),
        header_style="bold" if terminal else "",
    )
    for header in headers:
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(_escape(cell) for cell in row))
    with console.capture() as captured:
        console.print(table, crop=False)
    if title:
        click.echo(title)
    # rich pads every cell to its column's width; trailing blanks only get in the way.
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def _plain(data: Any) -> Any:
    """Copy into plain dicts and lists, so json/yaml never meet a Mapping subclass."""
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_plain(v) for v in data]
    return data
