"""Logging of rule scripts: every record goes to the rule's log file and to stderr."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import TracebackType

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_rule_logging(log_path: str | os.PathLike[str], level: int = logging.INFO) -> None:
    """Send logging (and uncaught exceptions, and warnings) to ``log_path`` and stderr.

    The log file is started afresh, so it holds the latest run of the rule only.
    """
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=level,
        format=FORMAT,
        handlers=[logging.FileHandler(log_path, mode="w"), logging.StreamHandler(sys.stderr)],
        force=True,
    )
    logging.captureWarnings(True)

    # A failing job's traceback belongs in its log file, which Snakemake points the user to.
    def log_exception(
        kind: type[BaseException], error: BaseException, trace: TracebackType | None
    ) -> None:
        logging.getLogger("lowshot").critical("job failed", exc_info=(kind, error, trace))

    sys.excepthook = log_exception
