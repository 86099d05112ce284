"""The catalogue: every method, network, dataset, init scheme and sanity-check variant.

Owns: the registry and its entries (``registry``), how each method's mask is made
(``pruning``: the one dispatch on method kind), the plugins that add entries
(``plugins``) and the catalogue's rendering for ``prunelib catalogue`` and
docs/methods.md (``listing``).

May import: ``foundations``.  Entries name their code as ``"module:attribute"``
strings resolved on first use, so importing the catalogue imports no torch.
"""
