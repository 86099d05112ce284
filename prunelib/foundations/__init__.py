"""Foundations: the facts and tools every other part stands on.

Owns: every file name the workflow writes (``paths``), the eval row's columns and the
metrics table (``eval_row``), typed hashable settings (``hparams``), verified atomic
artifact I/O with lineage (``artifacts``), seeded random streams (``seeding``) and the
error base class (``errors``).

May import: nothing from prunelib outside this package (torch only where a module
reads or writes tensors).
"""
