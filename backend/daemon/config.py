"""Daemon settings (from `python -m backend serve` flags) in one typed record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DEFAULT_MAX_PIXELS = 1 << 26          # 67 MP, e.g. 8192 x 8192
DEFAULT_JOB_TIMEOUT = 900.0           # seconds an interactive job may take, queue included
DEFAULT_BATCH_TIMEOUT = 7 * 24 * 3600.0
DEFAULT_CLIENT_TIMEOUT = 10.0         # silence after which a waiting client counts as gone
HEARTBEAT_INTERVAL = 0.5              # how often the daemon probes clients that have jobs
MAX_FRAMES = 2 + 16                   # content + styles + mask (protocol.MAX_STYLES)
DEFAULT_MAX_QUEUE = 32                # queued + running jobs of all clients together
DEFAULT_MAX_QUEUE_PER_CLIENT = 8      # queued + running jobs of one connection


@dataclass
class DaemonConfig:
    endpoint: str
    runtime_dir: Path
    device: str = "auto"
    threads: Optional[int] = None     # CPU threads for torch (None: the Runtime's default)
    compile: Optional[bool] = None    # torch.compile the networks (None: $STYLE_TRANSFER_COMPILE)
    models_dir: Optional[Path] = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    job_timeout: float = DEFAULT_JOB_TIMEOUT
    batch_timeout: float = DEFAULT_BATCH_TIMEOUT
    client_timeout: float = DEFAULT_CLIENT_TIMEOUT
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    curve_keys: Optional[Path] = None
    allow_dirs: tuple[Path, ...] = field(default_factory=tuple)   # remote clients' file roots
    max_job_memory: Optional[int] = None  # bytes of whole images a job may plan (None: a share
                                          # of the memory available at the time)
    max_style_bytes: int = 256 << 20      # style files larger than this are refused
    style_read_timeout: float = 20.0      # seconds one style file may take to read
    max_queue: int = DEFAULT_MAX_QUEUE
    max_queue_per_client: int = DEFAULT_MAX_QUEUE_PER_CLIENT
    log_file: Optional[Path] = None   # None: console (--foreground)

    @property
    def max_message_bytes(self) -> int:
        """ZMQ_MAXMSGSIZE: one frame may hold at most a max-size RGBA float32 image."""
        return self.max_pixels * 4 * 4 + 4096
