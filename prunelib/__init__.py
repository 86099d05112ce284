"""prunelib: the PyTorch core of the pruning reproducibility pipeline.

Importing the package is cheap (no torch); each submodule imports what it needs.
"""

__version__ = "0.1.0"
