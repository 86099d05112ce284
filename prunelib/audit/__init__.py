"""Audits of artifacts on disk: a mask, a cell's provenance, two masks' overlap, the
grid's completeness (``checks``), and two runs' eval rows column by column (``rows``).

May import: ``foundations``, ``catalogue``, ``config``, ``methods``.
"""
