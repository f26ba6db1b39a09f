"""Builds the optional C helpers (src/xavyo_siem/_speedups.c); everything else is in
pyproject.toml. Without a C compiler the build still succeeds and the package runs the
Python versions of the same helpers (xavyo_siem.speedups)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "xavyo_siem._speedups",
            ["src/xavyo_siem/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
