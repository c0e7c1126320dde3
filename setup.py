"""Legacy shim for `python setup.py develop` and old pip; metadata lives in pyproject.toml."""

from setuptools import setup

setup()
