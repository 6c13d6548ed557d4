"""Builds the Cython hot path: every ext/NAME.pyx becomes the module agent._NAME."""

from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

EXT_DIR = Path("ext")

extensions = [
    Extension(
        f"agent._{pyx.stem}",
        [str(pyx)],
        include_dirs=[str(EXT_DIR)],
        extra_compile_args=["-O3", "-Wno-unused-function"],
    )
    for pyx in sorted(EXT_DIR.glob("*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=[str(EXT_DIR)],
        compiler_directives={"language_level": 3},
    ),
)
