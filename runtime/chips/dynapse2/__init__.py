"""INI DYNAP-SE2 emulator: AdEx DPI neurons on cores of shared biases, 4-bit masked weights, mismatch.

``compile_dynapse2`` checks a CubaLIF ``Network`` against an ``AdexCoreProfile``, maps each
population's parameters to core biases, places neurons on cores and chips and fits each
core's four base weights; ``Dynapse2Chip`` runs the result tick by tick (``kernel``), and
``reference`` is an independent numpy implementation of the same equations for tests.
"""
