"""Reports: the aggregate of every eval row into tables, figures and the HTML report's
files (``aggregate``; ``layout`` names every file it writes, ``stats``, ``tables``,
``figures``; ``jobgraph``: the job graph of ``snakemake --report``), and the reproduction table of docs/reproductions.md (``reproductions``).

May import: ``foundations``, ``catalogue``, ``data``, ``config``.  Reads artifacts
from disk; never imports the stages.
"""
