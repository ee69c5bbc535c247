"""GIMP-side helpers of the style-transfer plug-in (pixel I/O, procedures, dialogs).

Runs inside GIMP's own Python: standard library, PyGObject (Gimp, GimpUi, Gegl) and pyzmq only.
The protocol, options and client live in the sibling `stclient` package, shared with the backend.
"""
