"""The `gmdrit` program's entry point (``python -m gmdrit_cli`` and the console script).

Importing the command line (typer, rich, every command module) takes about a second, and a Ctrl+C pressed then
(a typo seen just after Enter) would stop Python inside some import with a traceback. Until the command line is
ready, a Ctrl+C ends the program at once with "interrupted" and exit code 130, as it does afterwards. This module
imports nothing heavy itself.
"""

import os
import signal
import sys


def _interrupted_while_starting(signum, frame) -> None:
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    os._exit(130)  # nothing was written yet: no clean-up to unwind


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from .main import main as run_command_line  # its _run_app takes Ctrl+C over

    run_command_line()
