"""Client side of the style-transfer toolkit: protocol, option definitions, errors, client.

This package runs inside GIMP's own Python, so it uses only the standard library and pyzmq.
The backend imports it from here (backend/__init__.py puts this folder on sys.path), so the
protocol and the option definitions exist exactly once.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
