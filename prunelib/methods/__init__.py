"""Pruning methods: the scorers (``scorers``, one small ``Scorer`` per method), exact
top-k selection with recorded ties (``masking``), structured filter pruning and its
slimmed networks (``structured``, ``slimming``), iterative magnitude pruning
(``iterative``) and the sanity-check variants (``variants``).  Add a kind of method:
its ``Pruning`` in ``catalogue.pruning``, its code here, its mask path in
``stages.mask``.

May import: ``foundations``, ``catalogue``, ``data``, ``nets``, ``config``, ``train``.
"""
