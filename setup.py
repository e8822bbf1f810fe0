"""The one thing pyproject.toml cannot declare: the repository's recipes/ and examples/ folders
go into the built package as mlxtune/shipped/recipes and mlxtune/shipped/examples, so an
installed wheel runs `mlxtune recipe run quickstart` with no clone. A clone (and an editable
install) keeps them at the top level; mlxtune/shipped.py finds either. The sdist carries them
through MANIFEST.in."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("recipes", "examples")


class BuildWithShipped(build_py):
    """build_py, then a copy of recipes/ and examples/ under mlxtune/shipped/."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name in SHIPPED:
            target = Path(self.build_lib) / "mlxtune" / "shipped" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(
                ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]")
            )


setup(cmdclass={"build_py": BuildWithShipped})
