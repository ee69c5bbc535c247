"""The daemon: a ROUTER server whose single worker thread owns the device.

server.py (socket loop, dispatch, liveness), worker.py (runs jobs on the Runtime), jobs.py (the
queue), validation.py (checks before any work), images.py (wire frames <-> numpy), security.py
(bind policy, CURVE, token), state.py (state file, single-instance lock), logsetup.py.
"""
