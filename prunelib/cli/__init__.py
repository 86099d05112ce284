"""The command line (``main``: ``python -m prunelib <command>``) and the pre-imported
worker that serves stage commands (``worker``, with its client half ``worker_client``).

May import: everything below it; nothing imports it but ``prunelib.__main__`` and the
Snakefile (which starts the worker).
"""
