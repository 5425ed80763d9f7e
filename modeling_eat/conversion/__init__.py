"""The conversion workflow: official EAT checkpoints (fairseq `.pt` files, folders of the hub's remote-code port) into
this package's models, verified numerically before anything is written (`python -m modeling_eat.convert`, `cli`).

Reading (`reading`), the source layouts and renaming rules (`layouts`), the converted config (`settings`), weights and
their checks (`weights`), the independent reference forward (`reference`), and the driver (`convert`).
"""

from ..loading_eat import audioset_id2label
from .convert import TARGETS, ConversionReport, build_converted_model, convert_checkpoint, plan_conversion
from .errors import ConversionError, UnsafeCheckpointError
from .reading import load_source_checkpoint


__all__ = [
    "TARGETS",
    "ConversionError",
    "ConversionReport",
    "UnsafeCheckpointError",
    "audioset_id2label",
    "build_converted_model",
    "convert_checkpoint",
    "load_source_checkpoint",
    "plan_conversion",
]
