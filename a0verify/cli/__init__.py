"""Command-line interface: a thin click layer over the same functions the Snakefile calls.

Each command lives in its own module under ``a0verify.cli`` and is imported lazily, so
``a0verify --help`` stays fast (``import itk`` alone takes seconds).

Exit codes: see :mod:`a0verify.errors` (0 ran, 1 not A0 with ``--fail-unless-a0`` and nothing
else, 2 bad input, 3 registration failed, 4 segmentation failed, 5 batch had failed cases,
6 send to PACS failed, 70 internal error, 130 interrupted or aborted).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import traceback
from typing import Any

import click

from a0verify import __version__
from a0verify.errors import EXIT_ABORTED, EXIT_INTERNAL, A0Error

# command name -> "module:function" (module relative to a0verify.cli)
COMMANDS: dict[str, str] = {
    "demo": "run_cmd:demo",
    "run": "run_cmd:run",
    "margin": "run_cmd:margin",
    "phantom": "run_cmd:phantom",
    "register": "register_cmd:register",
    "segment": "segment_cmd:segment",
    "report": "report_cmd:report",
    "batch": "batch_cmd:batch",
    "inspect": "inspect_cmd:inspect_cmd",
    "doctor": "run_cmd:doctor",
    "export-dicom": "export_dicom_cmd:export_dicom",
    "send": "send_cmd:send",
}

EPILOG = """\b
Exit codes:
  0   ran to the end (whatever the verdict)
  1   verdict is not A0 and --fail-unless-a0 was given
  2   bad usage or bad input (one line on stderr, nothing written)
  3   registration failed
  4   segmentation failed
  5   batch finished with failed cases
  6   send: the PACS node did not store every file
  70  internal error (re-run with A0VERIFY_DEBUG=1 for a traceback)
  130 interrupted or aborted (nothing looks finished)
"""


class LazyGroup(click.Group):
    """Group whose subcommands are imported on first use; maps A0Error to one-line exits."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    def _available(self, name: str) -> bool:
        mod = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(f"a0verify.cli.{mod}") is not None

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not self._available(cmd_name):
            return None
        mod_name, attr = target.split(":")
        mod = importlib.import_module(f"a0verify.cli.{mod_name}")
        cmd = getattr(mod, attr)
        assert isinstance(cmd, click.Command)
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except A0Error as exc:
            click.echo(f"a0verify: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except (KeyboardInterrupt, click.exceptions.Abort):
            click.echo("a0verify: interrupted", err=True)
            ctx.exit(EXIT_ABORTED)
        except MemoryError:
            click.echo("a0verify: error: out of memory", err=True)
            ctx.exit(EXIT_INTERNAL)
        except Exception as exc:
            if os.environ.get("A0VERIFY_DEBUG"):
                traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            click.echo(f"a0verify: internal error: {type(exc).__name__}: {first} "
                       "(re-run with A0VERIFY_DEBUG=1 for details)", err=True)
            ctx.exit(EXIT_INTERNAL)


@click.group(cls=LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="a0verify")
def main() -> None:
    """a0verify: verify the 3-D safety margin (A0 ablation) after liver tumour ablation.

    Sign convention: the margin is the signed distance (mm) from the tumour surface to the
    ablation-zone boundary, positive inside the zone. Physical coordinates are LPS mm.
    """


def entry() -> None:
    """Console-script entry point (``a0verify``)."""
    main()

