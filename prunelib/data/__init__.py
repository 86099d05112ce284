"""Datasets: fetching, preparing and serving them (``datasets``: loaders, the prepared
tensor file, scoring batches, train subsets).

May import: ``foundations``, ``catalogue``.
"""
