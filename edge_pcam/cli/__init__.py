"""The `edge-pcam` command line: one small module per command, engines imported lazily.

Nothing here imports TensorFlow at import time, so `edge-pcam --help` and the
device-side commands start fast.
"""

from __future__ import annotations

import sys
import warnings

import typer

from edge_pcam.cli import bench as bench_cmd
from edge_pcam.cli import calibrate, data, demo, gradcam, info, predict
from edge_pcam.cli import scan as scan_cmd
from edge_pcam.cli import watch as watch_cmd
from edge_pcam.cli import evaluate as evaluate_cmd
from edge_pcam.cli import train as train_cmd
from edge_pcam.cli import convert as convert_cmd
from edge_pcam.cli import qat as qat_cmd
from edge_pcam.cli import upgrade as upgrade_cmd
from edge_pcam.errors import EdgePcamError, EdgePcamWarning

# Typer 0.2x carries its own copy of click; its exception classes are found from the public BadParameter.
_USAGE_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")
_CLICK_ERROR = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

app = typer.Typer(
    name="edge-pcam",
    help="Train, quantize, convert and run a lymph-node metastasis detector on edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("info")(info.info)
app.add_typer(data.app, name="data")
app.command("predict")(predict.predict)
app.command("gradcam")(gradcam.gradcam)
app.command("calibrate")(calibrate.calibrate)
app.command("upgrade")(upgrade_cmd.upgrade)
app.command("bench")(bench_cmd.bench)
app.command("scan")(scan_cmd.scan)
app.command("watch")(watch_cmd.watch)
app.command("train")(train_cmd.train)
app.command("qat")(qat_cmd.qat)
app.command("convert")(convert_cmd.convert)
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("demo")(demo.demo)


def main() -> None:
    """Console entry point: user errors, bad options included, print one line and exit non-zero, never a
    traceback; edge-pcam's warnings print one line each. `edge-pcam` alone prints the help."""
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except EdgePcamError as exc:
        _error(str(exc), exc.exit_code)
    except _USAGE_ERROR as exc:  # an unknown option, a missing argument, a value out of its range
        if type(exc).__name__ == "NoArgsIsHelpError":  # `edge-pcam` or `edge-pcam data` alone: the help
            if exc.format_message():  # Typer's rich help is printed as the error is made, and this is ""
                print(exc.format_message())
            sys.exit(exc.exit_code)
        command = exc.ctx.command_path if exc.ctx is not None else "edge-pcam"
        _error(f"{exc.format_message()} (see '{command} --help')", exc.exit_code)
    except _CLICK_ERROR as exc:
        _error(exc.format_message(), exc.exit_code)
    except typer.Abort:
        _error("aborted", 1)
    sys.exit(code if isinstance(code, int) else 0)


def _error(message: str, code: int) -> None:
    print(f"edge-pcam: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(code)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, EdgePcamWarning):
        print(f"edge-pcam: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))
