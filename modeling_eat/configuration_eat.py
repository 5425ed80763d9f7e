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
"""EAT (Efficient Audio Transformer) model configuration."""

import copy
import os
import shutil
from pathlib import Path

from huggingface_hub.dataclasses import strict
from transformers.configuration_utils import PreTrainedConfig
from transformers.utils import logging

from .loading_eat import refuse_hub_port_fields, translate_hub_port_config


logger = logging.get_logger(__name__)


# Sizes and pre-training recipes of the official checkpoints (`config/pretraining_AS2M.yaml` and
# `pretraining_AS2M_large.yaml` of the EAT repository). `tiny` and `small` are ours: `tiny` has the width and depth of
# the reference fixtures, for tests; `small` is twice as wide, for demos, because 64 channels learn too slowly in a few
# hundred steps (FIDELITY.md). Both scale the EMA schedule to the length of the run (ema_scale_with_run). The teacher's
# target layers and the CNN decoder's width follow the encoder (all of its layers, its width), so no preset names them
# and an override of the depth or width needs no second one.
SIZE_PRESETS = {
    "base": {},
    "large": {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "decoder_kernel_size": 5,
        "decoder_num_layers": 3,
        "mask_ratio": 0.75,
        "mask_prob_adjust": 0.1,
        "ema_anneal_end_step": 150000,
    },
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 256,
        "decoder_num_layers": 2,
        "ema_scale_with_run": True,
        "maskspec_decoder_hidden_size": 64,
        "maskspec_decoder_intermediate_size": 128,
        "maskspec_decoder_num_attention_heads": 4,
    },
}
SIZE_PRESETS["small"] = {
    **SIZE_PRESETS["tiny"],
    "hidden_size": 128,
    "intermediate_size": 512,
    "maskspec_decoder_hidden_size": 128,
    "maskspec_decoder_intermediate_size": 256,
}

# Every class a saved folder can be loaded as with `trust_remote_code=True`. transformers itself writes only the
# saved object's own entry, so a folder saved from EATForPreTraining could not be opened with AutoModel.
AUTO_MAP = {
    "AutoConfig": "configuration_eat.EATConfig",
    "AutoFeatureExtractor": "feature_extraction_eat.EATFeatureExtractor",
    "AutoModel": "modeling_eat.EATModel",
    "AutoModelForAudioClassification": "modeling_eat.EATForAudioClassification",
    "AutoModelForPreTraining": "modeling_eat.EATForPreTraining",
}

# The pipeline `pipeline("audio-classification", model=folder, trust_remote_code=True)` builds from the folder's own
# code where this package is not installed: transformers reads `custom_pipelines` from config.json.
PIPELINE_FILE = "pipeline_eat.py"
CUSTOM_PIPELINES = {
    "audio-classification": {
        "impl": "pipeline_eat.EATAudioClassificationPipeline",
        "pt": ["AutoModelForAudioClassification"],
        "type": "audio",
    }
}

# The two pre-training objectives differ in how they mask by default: EAT hides 80% in 5x5 blocks and trains on 16
# clones of each clip; MaskSpec hides 75% of the patches uniformly at random, one mask per clip.
OBJECTIVE_MASKING_DEFAULTS = {
    "eat": {"mask_strategy": "inverse_block", "mask_ratio": 0.8, "clone_batch": 16},
    "maskspec": {"mask_strategy": "random", "mask_ratio": 0.75, "clone_batch": 1},
}


@strict
class EATConfig(PreTrainedConfig):
    r"""
    Configuration of an EAT model. The defaults build EAT-Base (768 wide, 12 post-LN blocks of 12 heads) with the
    pre-training recipe of the official AudioSet-2M run. `EATConfig.from_preset("large")`, `"small"` and `"tiny"`
    give the other sizes.

    Args:
        hidden_size (`int`, *optional*, defaults to 768): width of the encoder.
        num_hidden_layers (`int`, *optional*, defaults to 12): number of Transformer blocks.
        num_attention_heads (`int`, *optional*, defaults to 12): attention heads per block.
        intermediate_size (`int`, *optional*, defaults to 3072): width of the feed-forward layer.
        hidden_act (`str`, *optional*, defaults to `"gelu"`): feed-forward activation (exact erf GELU).
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0): dropout on block outputs.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0): dropout on attention weights.
        initializer_range (`float`, *optional*, defaults to 0.02): std of the normal init of linear layers.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6): epsilon of every encoder LayerNorm.
        qkv_bias (`bool`, *optional*, defaults to `True`): bias on the fused query/key/value projection.
        patch_size (`int`, *optional*, defaults to 16): square patch size (frames x mel bins), also the stride.
        num_mel_bins (`int`, *optional*, defaults to 128): mel bins of the input spectrogram.
        max_length (`int`, *optional*, defaults to 1024): frames of the default input (10 s at 100 frames/s).
        max_time_patches (`int`, *optional*, defaults to 768): rows of patches covered by the fixed sin-cos
            positional table, i.e. the longest input is `max_time_patches * patch_size` frames (about 2 min).
        drop_path_rate (`float`, *optional*, defaults to 0.0): stochastic depth, linear over the blocks up to this.
        classifier_pooling (`str`, *optional*, defaults to `"cls"`): `"cls"` or `"mean"` (of the patch tokens).
        use_fc_norm (`bool`, *optional*, defaults to `True`): LayerNorm before the classification head.
        fc_norm_eps (`float`, *optional*): epsilon of that LayerNorm; defaults to `layer_norm_eps`, as in the
            official fine-tuning. Heads loaded from the hub port get its 1e-5.
        pretraining_objective (`str`, *optional*, defaults to `"eat"`): `"eat"` (EMA teacher, CNN decoder,
            utterance-frame objective) or `"maskspec"` (random masking, Transformer decoder, spectrogram MSE).
        mask_strategy (`str`, *optional*): `"inverse_block"` or `"random"`; defaults by objective.
        mask_ratio (`float`, *optional*): fraction of patches hidden from the student; defaults by objective
            (0.8 for EAT, 0.75 for MaskSpec).
        mask_prob_adjust (`float`, *optional*, defaults to 0.07): extra keep probability for block centres.
        mask_block_size (`int`, *optional*, defaults to 5): side of the square blocks of the inverse block mask.
        clone_batch (`int`, *optional*): independent masks per clip; defaults by objective (16 for EAT, 1 MaskSpec).
        decoder_hidden_size (`int`, *optional*): channels of the CNN decoder; defaults to `hidden_size`.
        decoder_kernel_size (`int`, *optional*, defaults to 3): kernel of its grouped 2-D convolutions (odd).
        decoder_groups (`int`, *optional*, defaults to 16): groups of those convolutions (must divide both widths).
        decoder_num_layers (`int`, *optional*, defaults to 6): convolution blocks in the decoder.
        mask_noise_std (`float`, *optional*, defaults to 0.01): std of the noise that stands in for masked tokens.
        ema_decay (`float`, *optional*, defaults to 0.9998): EMA teacher decay at the first update.
        ema_end_decay (`float`, *optional*, defaults to 0.99999): decay reached after `ema_anneal_end_step` updates.
        ema_anneal_end_step (`int`, *optional*, defaults to 100000): updates over which the decay is annealed.
        ema_scale_with_run (`bool`, *optional*, defaults to `False`): instead of the three EMA fields above, fit
            the schedule to the run the teacher is told of (`EATTeacher.fit_schedule_to_run`): a horizon
            `1 / (1 - decay)` of the whole run at the first update, annealed over the run to ten runs (see
            `modeling_eat.modeling_eat.ema_schedule`). The `tiny` and `small` presets, meant for short runs, turn it
            on.
        average_top_k_layers (`int`, *optional*): top teacher layers averaged into the targets; defaults to all
            `num_hidden_layers`.
        utterance_loss_weight (`float`, *optional*, defaults to 1.0): weight of the CLS (utterance) loss.
        utterance_loss_reduction (`str`, *optional*, defaults to `"sum"`): `"sum"` over the batch's
            `batch_size * clones` CLS predictions, the official objective, or `"mean"` over them (see
            `utterance_frame_loss`).
        maskspec_decoder_hidden_size (`int`, *optional*): width of the MaskSpec decoder; defaults to
            `min(512, hidden_size)`.
        maskspec_decoder_num_layers (`int`, *optional*, defaults to 2): its Transformer blocks.
        maskspec_decoder_num_attention_heads (`int`, *optional*): its attention heads; defaults to one per 64
            channels (at least one).
        maskspec_decoder_intermediate_size (`int`, *optional*): its feed-forward width; defaults to 4 times its
            width.

    The pre-training fields (masking, decoders, teacher) are checked when an `EATForPreTraining` is built, against
    its objective: an `EATModel` or a classifier never uses them.

    A `config.json` of the hub's remote-code port (`worstchan/EAT-*`: `embed_dim`, `depth`, `num_heads`, ...) is
    translated into these fields by `from_dict` (so by `from_pretrained` and the Auto classes).
        maskspec_norm_patch_loss (`bool`, *optional*, defaults to `False`): normalise each target patch to zero
            mean and unit variance before the MSE.

    Example:

    ```python
    >>> from modeling_eat import EATConfig, EATModel

    >>> config = EATConfig.from_preset("base")
    >>> model = EATModel(config)

    ```"""

    model_type = "eat"
    # Set by `import modeling_eat`, which registers the EAT pipeline in this process. transformers must then not be
    # pointed at the folder's copy of it (`custom_pipelines`), which it would only run with trust_remote_code=True.
    pipeline_registered = False

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    patch_size: int = 16
    num_mel_bins: int = 128
    max_length: int = 1024
    max_time_patches: int = 768
    drop_path_rate: float | int = 0.0

    classifier_pooling: str = "cls"
    use_fc_norm: bool = True
    fc_norm_eps: float | None = None

    pretraining_objective: str = "eat"
    mask_strategy: str | None = None
    mask_ratio: float | None = None
    mask_prob_adjust: float = 0.07
    mask_block_size: int = 5
    clone_batch: int | None = None
    decoder_hidden_size: int | None = None
    decoder_kernel_size: int = 3
    decoder_groups: int = 16
    decoder_num_layers: int = 6
    mask_noise_std: float = 0.01
    ema_decay: float = 0.9998
    ema_end_decay: float = 0.99999
    ema_anneal_end_step: int = 100000
    ema_scale_with_run: bool = False
    average_top_k_layers: int | None = None
    utterance_loss_weight: float | int = 1.0
    utterance_loss_reduction: str = "sum"

    maskspec_decoder_hidden_size: int | None = None
    maskspec_decoder_num_layers: int = 2
    maskspec_decoder_num_attention_heads: int | None = None
    maskspec_decoder_intermediate_size: int | None = None
    maskspec_norm_patch_loss: bool = False

    def __post_init__(self, **kwargs):
        refuse_hub_port_fields(kwargs)
        if self.pretraining_objective in OBJECTIVE_MASKING_DEFAULTS:
            for name, value in OBJECTIVE_MASKING_DEFAULTS[self.pretraining_objective].items():
                if getattr(self, name) is None:
                    setattr(self, name, value)
        super().__post_init__(**kwargs)
        self.auto_map = {**AUTO_MAP, **(getattr(self, "auto_map", None) or {})}
        if self.pipeline_registered:
            self.__dict__.pop("custom_pipelines", None)
        else:
            # A copy: transformers' `pipeline()` rewrites the entry it reads in place (class names to classes).
            self.custom_pipelines = {
                **(getattr(self, "custom_pipelines", None) or {}), **copy.deepcopy(CUSTOM_PIPELINES)
            }

    def to_dict(self):
        output = super().to_dict()
        output["custom_pipelines"] = {**(output.get("custom_pipelines") or {}), **copy.deepcopy(CUSTOM_PIPELINES)}
        return output

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """Saves config.json and the code files, including the pipeline's, which none of the saved classes imports
        (transformers copies only the files they import)."""
        os.makedirs(save_directory, exist_ok=True)
        copy_pipeline_code(save_directory)
        super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> "EATConfig":
        """As `PreTrainedConfig.from_dict`; a config of the hub's remote-code port is translated first."""
        return super().from_dict(translate_hub_port_config(config_dict), **kwargs)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "EATConfig":
        """The configuration of a named size (`base`, `large`, `small`, `tiny`); keyword arguments override fields."""
        if name not in SIZE_PRESETS:
            raise ValueError(f"Unknown EAT preset {name!r}: choose one of {sorted(SIZE_PRESETS)}.")
        return cls(**{**SIZE_PRESETS[name], **overrides})

    @classmethod
    def from_name_or_path(cls, name_or_path: str | os.PathLike, **kwargs) -> "EATConfig":
        """A size preset (`tiny`, `small`, `base`, `large`), a config JSON file, or a saved folder or Hub id.

        Keyword arguments override fields of a preset or a JSON file; for a folder or Hub id they go to
        `from_pretrained` (which takes both overrides and download options).
        """
        name_or_path = str(name_or_path)
        if name_or_path in SIZE_PRESETS:
            return cls.from_preset(name_or_path, **kwargs)
        if Path(name_or_path).is_file():
            return cls.from_dict({**cls._dict_from_json_file(name_or_path), **kwargs})
        try:
            return cls.from_pretrained(name_or_path, **kwargs)
        except OSError as error:
            raise ValueError(
                f"{name_or_path!r} is neither a size preset ({', '.join(sorted(SIZE_PRESETS))}), nor a config JSON "
                f"file, nor a folder or Hub id holding a config.json ({error})"
            ) from error

    @property
    def num_freq_patches(self) -> int:
        return self.num_mel_bins // self.patch_size

    @property
    def max_input_frames(self) -> int:
        """Frames of the longest input the model takes: the rows of its positional table, in frames (about 2 min)."""
        return self.max_time_patches * self.patch_size

    def validate_architecture(self):
        """Rejects settings no EAT encoder can be built with, naming the field at fault. The pre-training fields are
        checked where they are used: the masking ones by `EATMaskGenerator` (the one home of masking), the teacher's
        and the decoders' when `EATForPreTraining` builds them for its objective."""
        checks = [
            (self.hidden_size % self.num_attention_heads == 0,
             f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
             f"({self.num_attention_heads})"),
            (self.hidden_size % 4 == 0,
             f"hidden_size ({self.hidden_size}) must be a multiple of 4: the fixed 2-D sin-cos positions give a "
             "sine and a cosine channel to each of the two axes"),
            (self.num_mel_bins % self.patch_size == 0,
             f"num_mel_bins ({self.num_mel_bins}) must be a multiple of patch_size ({self.patch_size})"),
            (self.max_length % self.patch_size == 0 and self.max_length > 0,
             f"max_length ({self.max_length}) must be a positive multiple of patch_size ({self.patch_size})"),
            (self.max_length <= self.max_input_frames,
             f"max_length ({self.max_length}) exceeds the positional table: max_time_patches * patch_size = "
             f"{self.max_input_frames} frames"),
            (self.hidden_dropout_prob >= 0 and self.attention_probs_dropout_prob >= 0 and self.drop_path_rate >= 0,
             "hidden_dropout_prob, attention_probs_dropout_prob and drop_path_rate must be >= 0"),
            (self.classifier_pooling in ("cls", "mean"),
             f"classifier_pooling must be 'cls' or 'mean', got {self.classifier_pooling!r}"),
            (self.pretraining_objective in OBJECTIVE_MASKING_DEFAULTS,
             f"pretraining_objective must be one of {sorted(OBJECTIVE_MASKING_DEFAULTS)}, "
             f"got {self.pretraining_objective!r}"),
            (0.0 <= self.ema_decay <= 1.0 and 0.0 <= self.ema_end_decay <= 1.0,
             f"ema_decay ({self.ema_decay}) and ema_end_decay ({self.ema_end_decay}) must lie in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def copy_pipeline_code(folder) -> None:
    """Copies the pipeline file and the files it imports beside this one into `folder`. A remote-code copy of this
    file that never loaded the pipeline has no pipeline file beside it and copies nothing."""
    from transformers.dynamic_module_utils import get_relative_import_files

    source = Path(__file__).with_name(PIPELINE_FILE)
    if not source.is_file():
        return
    for path in [source, *map(Path, get_relative_import_files(source))]:
        target = Path(folder) / path.name
        if not (target.exists() and target.samefile(path)):
            shutil.copyfile(path, target)


__all__ = ["SIZE_PRESETS", "EATConfig", "copy_pipeline_code"]
