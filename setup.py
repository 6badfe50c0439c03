"""Builds the optional C hot path of metric logging (onthefly/tracking/_hotpath.c); everything else is in
pyproject.toml. Without a C compiler the build skips it and the same code runs in Python (hotpath.py)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("onthefly.tracking._hotpath", ["onthefly/tracking/_hotpath.c"], optional=True)])
