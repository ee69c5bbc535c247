"""Client side of the style-transfer toolkit: protocol, option definitions, errors, client.

This package runs inside GIMP's own Python, so it uses only the standard library and pyzmq.
It lives once, at the project root: the backend imports it from there, and install.py copies it
into the installed plug-in folder (or links it there with --link), so the protocol, the option
definitions and the engine cards exist exactly once.
"""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
