"""Packaging shim for Dataflow's ``--setup_file ./setup.py``: Beam builds an sdist of this project
and every worker pip-installs it (with the core dependencies of pyproject.toml, where all metadata
lives), so the workers import ``pipeline``, ``queries`` and their transforms like the driver does.
"""

from setuptools import setup

setup()
