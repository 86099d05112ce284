"""Networks: their definitions and which parameters are prunable (``models``), the init
schemes (``init_schemes``) and the multiply-accumulates of a masked forward pass
(``macs``).

May import: ``foundations``, ``catalogue``, ``data``.
"""
