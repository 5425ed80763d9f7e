# Copyright 2026 The modeling_eat authors.
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in compliance with
# the License. You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software distributed under the License is distributed on
# an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the License for the
# specific language governing permissions and limitations under the License.
"""EAT (Efficient Audio Transformer) for Hugging Face transformers.

Importing the package registers the EAT classes with the Auto classes, so `AutoModel.from_pretrained(folder)` works
without `trust_remote_code`; saved folders also carry the code files for use where this package is not installed.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForPreTraining,
)

from .configuration_eat import EATConfig
from .feature_extraction_eat import EATFeatureExtractor, kaldi_fbank
from .masking_eat import EATMaskGenerator, inverse_block_mask, random_mask
from .modeling_eat import (
    EATCNNDecoder,
    EATForAudioClassification,
    EATForPreTraining,
    EATMaskSpecDecoder,
    EATModel,
    EATPreTrainedModel,
    EATTeacher,
    utterance_frame_loss,
)
from .pipeline_eat import EATAudioClassificationPipeline, register_eat_pipeline


AutoConfig.register(EATConfig.model_type, EATConfig, exist_ok=True)
AutoModel.register(EATConfig, EATModel, exist_ok=True)
AutoModelForAudioClassification.register(EATConfig, EATForAudioClassification, exist_ok=True)
AutoModelForPreTraining.register(EATConfig, EATForPreTraining, exist_ok=True)
AutoFeatureExtractor.register(EATConfig, EATFeatureExtractor, exist_ok=True)

# Saving then copies the code files next to the weights (see configuration_eat.AUTO_MAP for the full map).
EATConfig.register_for_auto_class()
EATModel.register_for_auto_class("AutoModel")
EATForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")
EATForPreTraining.register_for_auto_class("AutoModelForPreTraining")
EATFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")

register_eat_pipeline()

__all__ = [
    "EATAudioClassificationPipeline",
    "EATCNNDecoder",
    "EATConfig",
    "EATFeatureExtractor",
    "EATForAudioClassification",
    "EATForPreTraining",
    "EATMaskGenerator",
    "EATMaskSpecDecoder",
    "EATModel",
    "EATPreTrainedModel",
    "EATTeacher",
    "inverse_block_mask",
    "kaldi_fbank",
    "random_mask",
    "register_eat_pipeline",
    "utterance_frame_loss",
]
