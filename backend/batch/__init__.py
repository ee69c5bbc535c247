"""Folder batches: stylize every image of INPUT_DIR into OUTPUT_DIR (daemon op and CLI).

spec.py         BatchSpec / BatchReport / ItemResult (JSON; the report schema is documented there)
scan.py         the folder walk and every path-safety rule (which files, where outputs may go)
runner.py       run_batch: threaded read/compute/write pipeline, resume, per-file errors, lock
progressbar.py  the CLI's progress line (count, images/s, ETA), also used by `stylize`
The CLI is backend/commands/batch.py; the daemon's `batch` op calls run_batch (backend/daemon).
"""

from .spec import BatchReport, BatchSpec, ItemResult

__all__ = ["BatchReport", "BatchSpec", "ItemResult", "run_batch"]


def run_batch(*args, **kwargs):  # noqa: D401 - thin lazy wrapper
    """See backend.batch.runner.run_batch (imported lazily: it pulls in numpy and the engines)."""
    from .runner import run_batch as _run_batch
    return _run_batch(*args, **kwargs)
