"""Synthetic training data the project generates itself (deterministic with a seed).

glyphs: grey renders of digits and letters (MIXGAN's content domain for the starter model).
textures: colourful procedural texture patches (its style domain).
folders: image folders as content or style domains for user training.
"""
