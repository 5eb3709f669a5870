"""Training energy+force models: configs, losses, statistics, the trainer and evaluation."""

import attnforce  # noqa: F401, E402  (imports torch before openmm: see attnforce/__init__.py)
