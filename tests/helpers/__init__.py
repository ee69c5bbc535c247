"""Test helpers shared by all suites (random-weight checkpoints, reference forward passes)."""
