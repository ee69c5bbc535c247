"""Sub-commands of `python -m backend`; each module defines `register(subparsers)`."""
