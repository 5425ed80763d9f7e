"""transformers' own common model tests (`ModelTesterMixin` of the installed release) on EAT's three classes, run as
an in-tree model runs them: a model tester with a small config, the classes registered in transformers' task
mappings (in-tree models are listed there), and the overrides an audio ViT needs, each with its reason.

`EATModel` and `EATForAudioClassification` share one tester. `EATForPreTraining` has its own: its student sees only
the visible patches, so its sequence is shorter, and its inputs carry fixed masks (with no decoder noise), so that
two forwards of the same inputs agree, as the common tests require of every model.
"""

import unittest

import torch
from torch import nn
from transformers.models.auto import modeling_auto

from modeling_eat import EATConfig, EATForAudioClassification, EATForPreTraining, EATMaskGenerator, EATModel

from eat_testing import NUM_MEL_BINS, small_tester_config
from transformers_common_tests import import_common_tests


common = import_common_tests()

TASK_MAPPINGS = {
    "MODEL_MAPPING_NAMES": "EATModel",
    "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES": "EATForAudioClassification",
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES": "EATForPreTraining",
}


class EATModelTester:
    """A 2-block, 32-wide EAT of 4 heads on 32-frame inputs: 2 x 8 patches, 17 tokens with the CLS."""

    def __init__(self, parent, batch_size=3, num_frames=32, num_labels=3, clone_batch=1):
        self.parent = parent
        self.batch_size = batch_size
        self.num_frames = num_frames
        self.num_labels = num_labels
        self.clone_batch = clone_batch
        self.hidden_size = 32
        self.num_hidden_layers = 2
        self.num_attention_heads = 4
        self.intermediate_size = 37
        self.patch_size = 16
        self.is_training = True
        self.num_patches = (num_frames // self.patch_size) * (NUM_MEL_BINS // self.patch_size)
        self.seq_length = 1 + self.num_patches
        # The common SDPA test hides the first `num_masks` of `mask_length` patches when a model takes masks.
        self.mask_length = self.num_patches
        self.num_masks = self.num_patches // 2

    def get_config(self) -> EATConfig:
        return small_tester_config(
            max_length=self.num_frames,
            max_time_patches=4,
            num_labels=self.num_labels,
            clone_batch=self.clone_batch,
            decoder_num_layers=2,
            # Zero noise in the hidden slots of the CNN decoder: a forward is a function of its inputs.
            mask_noise_std=0.0,
        )

    def prepare_config_and_inputs_for_common(self):
        input_values = common.floats_tensor([self.batch_size, self.num_frames, NUM_MEL_BINS])
        # One entry per frame, as the feature extractor returns it (the common tests pad it at either end).
        attention_mask = torch.ones(self.batch_size, self.num_frames, dtype=torch.long)
        return self.get_config(), {"input_values": input_values, "attention_mask": attention_mask}


class EATForPreTrainingTester(EATModelTester):
    """The same model with fixed masks in its inputs; the student's sequence is the CLS and the visible patches."""

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.mask_generator = EATMaskGenerator(self.get_config())
        num_time_patches = self.num_frames // self.patch_size
        num_visible = self.mask_generator.num_visible(num_time_patches, NUM_MEL_BINS // self.patch_size)
        self.seq_length = 1 + num_visible
        self.num_masks = self.num_patches - num_visible

    def prepare_config_and_inputs_for_common(self):
        config, inputs = super().prepare_config_and_inputs_for_common()
        num_time_patches = self.num_frames // self.patch_size
        masks = self.mask_generator(
            self.batch_size, num_time_patches, NUM_MEL_BINS // self.patch_size, torch.Generator().manual_seed(0)
        )
        return config, {**inputs, "bool_masked_pos": masks}


class EATCommonTests(common.ModelTesterMixin):
    """What both EAT test classes share: the task mappings, and the overrides with their reasons."""

    # No token embeddings to resize; no `inputs_embeds` (the patch embedding is a convolution of the spectrogram).
    test_resize_embeddings = False
    has_attentions = True

    @classmethod
    def setUpClass(cls):
        # In-tree models are listed in transformers' task mappings, which the common tests read to know which class
        # is the base model, which takes labels, and so on.
        super().setUpClass()
        cls.added_names = []
        for mapping_name, class_name in TASK_MAPPINGS.items():
            mapping = getattr(modeling_auto, mapping_name)
            if "eat" not in mapping:
                mapping["eat"] = class_name
                cls.added_names.append(mapping_name)

    @classmethod
    def tearDownClass(cls):
        for mapping_name in cls.added_names:
            del getattr(modeling_auto, mapping_name)["eat"]
        super().tearDownClass()

    @unittest.skip(reason="EAT takes spectrograms through a patch convolution: there are no inputs_embeds")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="EAT takes spectrograms through a patch convolution: there are no inputs_embeds")
    def test_inputs_embeds_matches_input_ids(self):
        pass

    def test_model_get_set_embeddings(self):
        # As AST's test: the input embedding is the patch projection, not an nn.Embedding, and no output embedding.
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), nn.Module)
            self.assertIsNone(model.get_output_embeddings())


class EATModelTest(EATCommonTests, unittest.TestCase):
    all_model_classes = (EATModel, EATForAudioClassification)

    def setUp(self):
        self.model_tester = EATModelTester(self)


class EATForPreTrainingTest(EATCommonTests, unittest.TestCase):
    all_model_classes = (EATForPreTraining,)

    def setUp(self):
        self.model_tester = EATForPreTrainingTester(self)
