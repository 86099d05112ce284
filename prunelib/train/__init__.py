"""Training: the loop and evaluation (``loop``), resumable checkpoints (``resume``) and
the metrics beyond top-1 computed from test logits (``metrics``; their names and labels
are ``foundations.eval_row``'s).

May import: ``foundations``, ``catalogue``, ``data``, ``nets``, ``config``.
"""
