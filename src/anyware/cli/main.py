"""``anyware``: wiring only. Each subcommand lives in its own module and imports heavy
packages (torch, triton, ...) inside its command function, so ``anyware --help`` is instant."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from anyware import __version__
from anyware.cli import comm as comm_cli
from anyware.cli import demo, env, migrate, profile, run
from anyware.cli import formats as formats_cli
from anyware.cli import logs as logs_cli
from anyware.cli import monitor as monitor_cli
from anyware.cli import ops as ops_cli
from anyware.cli import trace as trace_cli

app = typer.Typer(
    name="anyware",
    help="Run, port, check and tune PyTorch workloads on any accelerator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"anyware {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Run, port, check and tune PyTorch workloads on any accelerator."""


app.command("env", help=env.HELP)(env.command)
app.command("demo", help=demo.HELP)(demo.command)
app.add_typer(trace_cli.app, name="trace")
app.command("run", help=run.HELP, context_settings=run.CONTEXT)(run.command)
app.add_typer(migrate.app, name="migrate")
app.add_typer(profile.app, name="profile")
app.add_typer(logs_cli.app, name="logs")
app.add_typer(monitor_cli.app, name="monitor")
app.add_typer(ops_cli.app, name="ops")
app.add_typer(comm_cli.app, name="comm")
app.add_typer(formats_cli.app, name="formats")


def main(argv: list[str] | None = None) -> None:
    """Console entry point: usage and user errors are one line on stderr and exit status 2."""
    from anyware.cli._common import CliError
    from anyware.runtime import BackendUnavailableError, UnknownBackendError

    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv, prog_name="anyware", standalone_mode=False)
    except typer.Abort:
        print("anyware: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as e:  # usage errors: bad option, missing argument, ...
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `anyware` or `anyware migrate`
            print(e.format_message())
            sys.exit(2)
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        print(f"anyware: error: {e.format_message()}{hint}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
    except CliError as e:
        print(f"anyware: error: {e}", file=sys.stderr)
        sys.exit(e.code)
    except (UnknownBackendError, BackendUnavailableError) as e:
        print(f"anyware: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("anyware: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
