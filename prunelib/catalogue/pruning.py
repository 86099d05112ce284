"""How a method's mask is made: the one answer to "is this method iterative, structured,
re-scoring?".

Every method entry carries one ``Pruning`` (``MethodEntry.pruning``).  The rules
(``workflow/rules/common.smk``), the stage contracts (``prunelib/config/contracts.py``)
and the mask stage (``prunelib/stages/mask.py``) ask it; nothing else derives a method's
kind.  A new kind of method (one that updates the weights it keeps, one that changes the
network) is a new ``Pruning`` here, a mask path in ``stages/mask.py``, and the questions
below answered for it.  No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pruning:
    #: The mask path's name (``stages/mask.py`` maps it to the code that makes the mask).
    name: str
    #: Whether the method has a score stage (``scores.pt``, made once for every ratio).
    scored: bool
    #: Whether the mask stage scores again for each ratio (so it needs the method's
    #: settings and a device): ``Scorer.prune``, e.g. SynFlow's rounds.
    rescores: bool
    #: Whether the mask is a round of a prune-retrain chain (iterative magnitude pruning).
    chain: bool
    #: Whether whole filters are removed (with the input channels they fed).
    structured: bool
    #: What the cell's training starts from: ``init`` (the init artifact, kept or redrawn
    #: by ``init.after_pruning``), ``chain`` (the chain round's weights), ``pruned`` (the
    #: weights the pruning step updated, ``paths.UPDATED``: OBS-type methods) or ``mask``
    #: (the network the mask stage built and stored in mask.pt: EigenDamage's).
    trains_from: str
    description: str

    @property
    def updates_weights(self) -> bool:
        """Whether the pruning step changes the weights it keeps (OBS's
        δw = -(w_q / [H^-1]_qq) H^-1 e_q): the mask stage then writes them as an artifact
        of their own (``paths.UPDATED``, checksummed, in the lineage) and training starts
        from them (``init.after_pruning: keep``) or from a fresh draw that throws the
        update away (``redraw``; docs/configuration.md)."""
        return self.trains_from == "pruned"

    @property
    def pruned(self) -> bool:
        """Whether the mask removes anything (every kind but the dense control)."""
        return self.name != DENSE.name


DENSE = Pruning("dense", scored=False, rescores=False, chain=False, structured=False, trains_from="init",
                description="the unpruned control: every weight kept")
SINGLE_PASS = Pruning("single_pass", scored=True, rescores=False, chain=False, structured=False,
                      trains_from="init", description="scored once at initialisation, top-k per ratio")
RESCORED = Pruning("rescored", scored=True, rescores=True, chain=False, structured=False, trains_from="init",
                   description="scored again for each ratio while pruning (Scorer.prune)")
STRUCTURED = Pruning("structured", scored=True, rescores=False, chain=False, structured=True, trains_from="init",
                     description="whole filters by their summed scores")
#: A method that changes the network (EigenDamage): the mask stage builds the pruned network
#: and stores it in the mask artifact (``mask.pt``'s ``network``); training and eval start
#: from that network, not from the init (prunelib/methods/eigendamage.py).  Its scores
#: artifact holds what the selection reads (the K-FAC factors).
EIGENBASIS = Pruning("eigenbasis", scored=True, rescores=False, chain=False, structured=False, trains_from="mask",
                     description="rows and columns of each layer in its K-FAC eigenbasis; the network is rebuilt")
CHAIN = Pruning("chain", scored=False, rescores=False, chain=True, structured=False, trains_from="chain",
                description="a round of a prune-retrain chain (iterative magnitude pruning)")

#: Second-order methods that update the weights they keep (OBS, WoodFisher, L-OBS): like
#: ``rescored`` the mask stage prunes per ratio with the method's settings, on scoring
#: data (``score.per_method`` / the method's ``data``), and it also writes the updated
#: weights, from which the cell trains.
UPDATING = Pruning("updating", scored=True, rescores=True, chain=False, structured=False, trains_from="pruned",
                   description="pruned per ratio with a second-order update of the weights it keeps")

#: A filter method that also updates the weights it keeps (Kron-OBS): whole filters by
#: their scores as ``structured``, then the update of the remaining filters (from what the
#: score stage stored beside the scores), written to ``paths.UPDATED``; the cell trains from it.
STRUCTURED_UPDATING = Pruning("structured_updating", scored=True, rescores=False, chain=False, structured=True,
                              trains_from="pruned",
                              description="whole filters by their scores, the remaining filters updated")

ALL = (DENSE, SINGLE_PASS, RESCORED, STRUCTURED, EIGENBASIS, CHAIN, UPDATING, STRUCTURED_UPDATING)


def of(kind: str, rescores: bool = False, structured: bool = False, updates_weights: bool = False,
       network: bool = False) -> Pruning:
    """The ``Pruning`` of a method registered with ``kind`` (``registry.KINDS``) and its facts
    (``network``: it changes the network, as EigenDamage)."""
    if network:
        return EIGENBASIS
    if updates_weights and not structured and kind == "foresight":
        return UPDATING
    if updates_weights and structured and kind == "foresight":
        return STRUCTURED_UPDATING
    if kind == "dense":
        return DENSE
    if kind == "iterative":
        return CHAIN
    if structured:
        return STRUCTURED
    return RESCORED if rescores else SINGLE_PASS
