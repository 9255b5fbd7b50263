"""The version of pgmcp: a leaf any layer may import (``pgmcp.__version__`` re-exports it).

The one place it is written: pyproject.toml reads it from here (``[tool.setuptools.dynamic]``).
"""

__version__ = "0.1.0"
