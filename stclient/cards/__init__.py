"""One module per engine, each defining `CARD` (a stclient.card.EngineCard).

Adding a file here adds the engine everywhere: stclient.registry finds the modules by their file
names (the file name is the engine's name). Standard library only: GIMP's Python imports these.
"""
