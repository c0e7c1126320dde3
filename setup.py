"""Legacy shim so `python setup.py develop` and old pip still work; metadata lives in pyproject.toml."""

from setuptools import setup

setup()
