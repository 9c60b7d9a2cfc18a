"""The ``dynapcnn`` chip (SynSense DynapCNN / Speck): nine conv -> IAF -> sum-pool cores.

``compile_convnet`` checks a ``ConvNet`` against a ``ConvCoreProfile``, maps its layers to
cores and quantises it; ``DynapcnnChip`` runs the result event by event.
"""

from runtime.chips.dynapcnn.chip import DynapcnnChip
from runtime.chips.dynapcnn.compile import ChipLayer, CompiledConv, compile_convnet
from runtime.chips.dynapcnn.report import ConvReport, CoreRow, QuantReport

__all__ = ["ChipLayer", "CompiledConv", "ConvReport", "CoreRow", "DynapcnnChip", "QuantReport", "compile_convnet"]
