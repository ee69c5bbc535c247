"""Daemon logging: a rotating file in the runtime dir, or the console with --foreground."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Optional

LOGGER_NAME = "backend.daemon"
FORMAT = "%(asctime)s %(levelname)s %(threadName)s: %(message)s"
MAX_BYTES = 5 * 1024 * 1024
BACKUPS = 3


def setup_logging(log_file: Optional[Path], level: int = logging.INFO) -> logging.Logger:
    """Log to `log_file` (rotating, 5 MiB x 4) or, when None, to stderr."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    if log_file is None:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
    else:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)
