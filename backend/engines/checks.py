"""The one validation of a job that enters from Python (CLI, batch, scripts): what the daemon's
request validation does for a socket request, for a StylizeJob built in-process."""

from __future__ import annotations

from backend.engines import get_engine
from backend.engines.job import CheckedJob, StylizeJob
from backend.pixels import checked_pixels, mask_to_float
from stclient.registry import resolve_options


def checked_job(job: StylizeJob) -> CheckedJob:
    """`job` checked once: bad pixels, a mask of another size, an option out of range or the
    wrong number of styles are refused here, before any model loads (a CheckedJob is returned
    as it is)."""
    if isinstance(job, CheckedJob):
        return job
    engine = get_engine(job.engine)
    options = resolve_options(job.engine, job.options)
    content = checked_pixels(job.content)
    height, width = content.shape[:2]
    styles = [checked_pixels(style, f"Style image {index + 1}")
              for index, style in enumerate(job.styles)]
    mask = None if job.mask is None else mask_to_float(job.mask, height, width)
    checked = CheckedJob(engine=job.engine, content=content, model=job.model, styles=styles,
                         mask=mask, options=options, checkpoints=dict(job.checkpoints))
    engine.validate(checked, options)
    return checked
