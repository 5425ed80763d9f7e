"""Generic model tests for EATModel, EATForAudioClassification and EATForPreTraining.

They check the properties transformers' own model test-suite checks (serialisation, loading reports, output shapes,
attention backends, checkpointing, training, meta-device init, input validation), on a tiny random-weight EAT.
"""

import copy
import inspect
import warnings

import pytest
import torch
import torch.nn.functional as F

from modeling_eat import EATConfig, EATForAudioClassification, EATForPreTraining, EATModel
from modeling_eat.modeling_eat import sincos_position_table

from eat_testing import CLASSIFIER_FRAMES, HEAD_KEYS, build, small_tester_config, spectrogram, tiny_config


PATCH_EMBEDDING_PARAMS = {
    "eat.embeddings.patch_embeddings.projection.weight",
    "eat.embeddings.patch_embeddings.projection.bias",
}





def tiny_model(model_class, **overrides):
    """A tiny EAT in eval mode, on CLASSIFIER_FRAMES-frame clips with a 3-class head."""
    return build(model_class, **{"max_length": CLASSIFIER_FRAMES, "num_labels": 3, **overrides}).eval()


def model_inputs(batch_size: int = 2, num_frames: int = CLASSIFIER_FRAMES, seed: int = 0) -> torch.Tensor:
    return spectrogram(batch_size, num_frames, seed)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def num_patches(frames: int) -> int:
    return frames // 16 * 8


# ---------------------------------------------------------------------------------------------------------------------
# save / load


@pytest.mark.parametrize("model_class", [EATModel, EATForAudioClassification])
def test_save_load_round_trip_with_safetensors(tmp_path, model_class):
    model = tiny_model(model_class)
    inputs = model_inputs()
    with torch.no_grad():
        expected = model(inputs)[0]
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not (tmp_path / "pytorch_model.bin").exists()

    reloaded, info = model_class.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set() and info["mismatched_keys"] == set()
    assert not reloaded.training
    with torch.no_grad():
        assert torch.equal(reloaded(inputs)[0], expected)


def test_pretraining_save_load_round_trip(tmp_path):
    model = tiny_model(EATForPreTraining)
    model.teacher.update(model.eat)  # a teacher whose update count is not zero must survive the round trip
    inputs = model_inputs()
    with torch.no_grad():
        expected = model(inputs, generator=torch.Generator().manual_seed(3)).loss
    model.save_pretrained(tmp_path)
    reloaded, info = EATForPreTraining.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    assert int(reloaded.teacher.num_updates) == 1
    reference_state = model.state_dict()
    for name, value in reloaded.state_dict().items():
        assert torch.equal(value, reference_state[name]), name
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(inputs, generator=torch.Generator().manual_seed(3)).loss, expected)


def test_classifier_from_encoder_folder_reports_the_missing_head(tmp_path):
    encoder = tiny_model(EATModel)
    encoder.save_pretrained(tmp_path)
    classifier, info = EATForAudioClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == HEAD_KEYS
    assert info["unexpected_keys"] == set()
    for name, value in encoder.state_dict().items():  # the head's init must leave the loaded encoder alone
        assert torch.equal(classifier.eat.state_dict()[name], value), name


def test_encoder_from_classifier_folder_takes_the_encoder(tmp_path):
    classifier = tiny_model(EATForAudioClassification)
    classifier.save_pretrained(tmp_path)
    encoder, info = EATModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set()
    assert info["unexpected_keys"] == HEAD_KEYS  # reported, as transformers does for any head
    inputs = model_inputs()
    with torch.no_grad():
        assert torch.equal(encoder(inputs).last_hidden_state, classifier.eat(inputs).last_hidden_state)


def test_encoder_and_classifier_from_pretraining_folder_take_the_student(tmp_path):
    pretraining = tiny_model(EATForPreTraining)
    with torch.no_grad():  # make the teacher differ, so taking it instead of the student would show
        for param in pretraining.teacher.parameters():
            param.add_(1.0)
    pretraining.save_pretrained(tmp_path)

    encoder, info = EATModel.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == set() and info["unexpected_keys"] == set()
    for name, value in encoder.state_dict().items():
        assert torch.equal(value, pretraining.eat.state_dict()[name]), name

    classifier, info = EATForAudioClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == HEAD_KEYS and info["unexpected_keys"] == set()
    assert torch.equal(classifier.eat.embeddings.cls_token, pretraining.eat.embeddings.cls_token)


# ---------------------------------------------------------------------------------------------------------------------
# a transformers-style ModelTester config


class EATModelTester:
    """Two clips in `small_tester_config()`'s sizes (tests/test_transformers_common.py runs transformers' own tests on
    them)."""

    batch_size = 2
    num_frames = 32
    num_hidden_layers = 2

    def get_config(self, **overrides) -> EATConfig:
        return small_tester_config(**overrides)

    def prepare_inputs(self) -> torch.Tensor:
        return spectrogram(self.batch_size, self.num_frames)


TESTER_CLASSES = {
    "EATModel": (EATModel, {}),
    "EATForAudioClassification": (EATForAudioClassification, {}),
    "EATForPreTraining (eat)": (EATForPreTraining, {}),
    "EATForPreTraining (maskspec)": (EATForPreTraining, {"pretraining_objective": "maskspec"}),
}


@pytest.mark.parametrize("model_class, overrides", TESTER_CLASSES.values(), ids=TESTER_CLASSES.keys())
def test_model_tester_config_constructs_runs_trains_and_round_trips(model_class, overrides, tmp_path):
    tester = EATModelTester()
    torch.manual_seed(0)
    model = model_class(tester.get_config(**overrides)).train()
    inputs = tester.prepare_inputs()
    kwargs = {"labels": torch.tensor([0, 2])} if model_class is EATForAudioClassification else {}
    if model_class is EATForPreTraining:
        kwargs["generator"] = torch.Generator().manual_seed(0)
    outputs = model(inputs, output_hidden_states=True, **kwargs)
    if model_class is EATModel:
        assert outputs.last_hidden_state.shape == (2, 1 + num_patches(tester.num_frames), 32)
        outputs.last_hidden_state.sum().backward()
    else:
        assert torch.isfinite(outputs.loss)
        outputs.loss.backward()
    assert len(outputs.hidden_states) == tester.num_hidden_layers + 1
    if model_class is EATForPreTraining and model.teacher is not None:
        assert model.teacher.num_target_layers == 2  # all layers, by default
        model.update_teacher()

    model.eval().save_pretrained(tmp_path)
    reloaded, info = model_class.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info[name] for name in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    with torch.no_grad():
        if model_class is EATForPreTraining:
            kwargs["generator"] = torch.Generator().manual_seed(1)
            expected = model(inputs, **kwargs).loss
            kwargs["generator"] = torch.Generator().manual_seed(1)
            assert torch.equal(reloaded.eval()(inputs, **kwargs).loss, expected)
        else:
            assert torch.equal(reloaded(inputs)[0], model(inputs)[0])


# ---------------------------------------------------------------------------------------------------------------------
# outputs


def test_eval_mode_is_deterministic_even_with_dropout():
    model = tiny_model(EATForAudioClassification, hidden_dropout_prob=0.3, attention_probs_dropout_prob=0.3,
                  drop_path_rate=0.3)
    inputs = model_inputs()
    with torch.no_grad():
        assert torch.equal(model(inputs).logits, model(inputs).logits)


@pytest.mark.parametrize("model_class", [EATModel, EATForAudioClassification])
def test_batch_equals_items_one_by_one(model_class):
    model = tiny_model(model_class)
    inputs = model_inputs(batch_size=3)
    with torch.no_grad():
        batched = model(inputs)[0]
        for index in range(3):
            assert max_diff(model(inputs[index : index + 1])[0][0], batched[index]) <= 1e-5


def test_output_shapes_and_pooler():
    model = tiny_model(EATModel)
    outputs = model(model_inputs(batch_size=3, num_frames=96))
    assert outputs.last_hidden_state.shape == (3, 1 + num_patches(96), 64)
    assert torch.equal(outputs.pooler_output, outputs.last_hidden_state[:, 0])
    assert outputs.hidden_states is None and outputs.attentions is None


@pytest.mark.parametrize("model_class", [EATModel, EATForAudioClassification])
def test_hidden_states(model_class):
    model = tiny_model(model_class)
    outputs = model(model_inputs(), output_hidden_states=True)
    assert len(outputs.hidden_states) == model.config.num_hidden_layers + 1
    for hidden_state in outputs.hidden_states:
        assert hidden_state.shape == (2, 1 + num_patches(CLASSIFIER_FRAMES), 64)
    if model_class is EATModel:
        assert torch.equal(outputs.hidden_states[-1], outputs.last_hidden_state)
        # hidden_states[0] is the embedding output: CLS + positioned patches, layer-normalised
        assert torch.equal(outputs.hidden_states[0], model.embeddings(model_inputs()))


def test_hidden_states_from_the_config():
    model = tiny_model(EATModel, output_hidden_states=True)
    assert len(model(model_inputs()).hidden_states) == 4


@pytest.mark.parametrize("model_class", [EATModel, EATForAudioClassification])
def test_attentions_under_eager(model_class):
    model = tiny_model(model_class)
    model.set_attn_implementation("eager")
    outputs = model(model_inputs(), output_attentions=True)
    tokens = 1 + num_patches(CLASSIFIER_FRAMES)
    assert len(outputs.attentions) == model.config.num_hidden_layers
    for attention in outputs.attentions:
        assert attention.shape == (2, 4, tokens, tokens)
        assert torch.allclose(attention.sum(dim=-1), torch.ones(2, 4, tokens), atol=1e-5)


def test_output_attentions_under_sdpa_is_empty_as_in_transformers():
    model = tiny_model(EATModel)
    assert model.config._attn_implementation == "sdpa"
    outputs = model(model_inputs(), output_attentions=True, output_hidden_states=True)
    assert outputs.attentions == ()
    assert len(outputs.hidden_states) == 4


def test_eager_and_sdpa_agree(tmp_path):
    tiny_model(EATForAudioClassification).save_pretrained(tmp_path)
    eager = EATForAudioClassification.from_pretrained(tmp_path, attn_implementation="eager")
    sdpa = EATForAudioClassification.from_pretrained(tmp_path, attn_implementation="sdpa")
    assert (eager.config._attn_implementation, sdpa.config._attn_implementation) == ("eager", "sdpa")
    inputs = model_inputs(batch_size=3, num_frames=96)
    with torch.no_grad():
        eager_out = eager(inputs, output_hidden_states=True)
        sdpa_out = sdpa(inputs, output_hidden_states=True)
        assert max_diff(eager_out.logits, sdpa_out.logits) <= 1e-5
        for eager_state, sdpa_state in zip(eager_out.hidden_states, sdpa_out.hidden_states):
            assert max_diff(eager_state, sdpa_state) <= 1e-5

        switched = copy.deepcopy(sdpa)
        switched.set_attn_implementation("eager")
        assert switched.eat.config._attn_implementation == "eager"
        assert max_diff(switched(inputs).logits, eager_out.logits) <= 1e-6


def test_return_dict_false_gives_tuples():
    inputs = model_inputs()
    encoder = tiny_model(EATModel)
    with torch.no_grad():
        as_dict = encoder(inputs)
        as_tuple = encoder(inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    assert torch.equal(as_tuple[0], as_dict.last_hidden_state) and torch.equal(as_tuple[1], as_dict.pooler_output)

    classifier = tiny_model(EATForAudioClassification)
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        as_dict = classifier(inputs, labels=labels)
        loss, logits = classifier(inputs, labels=labels, return_dict=False)
    assert torch.equal(loss, as_dict.loss) and torch.equal(logits, as_dict.logits)

    pretraining = tiny_model(EATForPreTraining)
    with torch.no_grad():
        as_dict = pretraining(inputs, generator=torch.Generator().manual_seed(0))
        as_tuple = pretraining(inputs, generator=torch.Generator().manual_seed(0), return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], as_dict.loss)


def test_pretraining_hidden_states_are_the_students_over_visible_patches():
    model = tiny_model(EATForPreTraining)
    outputs = model(model_inputs(), generator=torch.Generator().manual_seed(0), output_hidden_states=True)
    rows, visible = outputs.bool_masked_pos.shape[0], int((~outputs.bool_masked_pos[0]).sum())
    assert rows == 2 * model.config.clone_batch
    assert len(outputs.hidden_states) == model.config.num_hidden_layers + 1
    for hidden_state in outputs.hidden_states:
        assert hidden_state.shape == (rows, 1 + visible, 64)
    assert torch.equal(outputs.hidden_states[-1], outputs.last_hidden_state)


# ---------------------------------------------------------------------------------------------------------------------
# input handling


def test_official_four_dimensional_input_equals_three_dimensional():
    model = tiny_model(EATModel)
    inputs = model_inputs()
    with torch.no_grad():
        assert torch.equal(model(inputs.unsqueeze(1)).last_hidden_state, model(inputs).last_hidden_state)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 70, 128), r"70 frames, not a positive multiple of the patch size 16"),
        ((2, 16 * 9, 128), r"144 frames, more than the positional table covers \(128 frames"),
        ((2, 64, 64), r"64 mel bins; this model takes 128"),
        ((64, 128), r"must have shape \(batch, frames, num_mel_bins\), got \(64, 128\)"),
        ((2, 2, 64, 128), r"got \(2, 2, 64, 128\)"),
    ],
)
def test_bad_input_shapes_raise_clear_errors(shape, message):
    model = tiny_model(EATModel, max_time_patches=8)
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(shape))


def test_pretraining_validates_inputs_too():
    with pytest.raises(ValueError, match="not a positive multiple of the patch size"):
        tiny_model(EATForPreTraining)(torch.zeros(2, 40, 128))


@pytest.mark.parametrize("model_class", [EATModel, EATForAudioClassification, EATForPreTraining])
def test_input_dtype_other_than_the_models_names_the_cast(model_class):
    model = tiny_model(model_class).to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"input_values is torch.float32 but the model's weights are torch.bfloat16: "
                                         r"cast the inputs with `input_values.to\(model.dtype\)`"):
        model(model_inputs())
    with pytest.raises(ValueError, match="dtype torch.int64: it must hold float fbank frames"):
        model(model_inputs().long())
    # Cast, or under autocast (which casts inside the layers), they run.
    model(model_inputs().to(torch.bfloat16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tiny_model(model_class)(model_inputs())


@pytest.mark.parametrize("model_class", [EATModel, EATForAudioClassification, EATForPreTraining])
@pytest.mark.parametrize("mask_frames", [CLASSIFIER_FRAMES - 16, CLASSIFIER_FRAMES + 1])
def test_attention_mask_of_another_length_names_the_fix(model_class, mask_frames):
    model = tiny_model(model_class)
    attention_mask = torch.ones(2, mask_frames, dtype=torch.long)
    pattern = (rf"attention_mask has shape \(2, {mask_frames}\), but input_values has 2 clips of "
               rf"{CLASSIFIER_FRAMES} frames: it ")
    with pytest.raises(ValueError, match=pattern + r"needs shape \(2, 64\).*return_attention_mask=True"):
        model(model_inputs(), attention_mask=attention_mask)


# ---------------------------------------------------------------------------------------------------------------------
# attention mask


def padded_batch(short_frames: int = CLASSIFIER_FRAMES, long_frames: int = 96):
    """A full clip and a shorter clip padded with noise (not zeros, so a leak of the padding would show)."""
    long_clip = model_inputs(batch_size=1, num_frames=long_frames, seed=1)
    short_clip = model_inputs(batch_size=1, num_frames=short_frames, seed=2)
    padding = model_inputs(batch_size=1, num_frames=long_frames - short_frames, seed=3) * 5
    batch = torch.cat([long_clip, torch.cat([short_clip, padding], dim=1)])
    attention_mask = torch.ones(2, long_frames, dtype=torch.long)
    attention_mask[1, short_frames:] = 0
    return batch, attention_mask, long_clip, short_clip


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_padded_rows_are_hidden_from_attention(attn_implementation):
    model = tiny_model(EATModel)
    model.set_attn_implementation(attn_implementation)
    batch, attention_mask, long_clip, short_clip = padded_batch()
    with torch.no_grad():
        masked = model(batch, attention_mask=attention_mask).last_hidden_state
        unpadded_short = model(short_clip).last_hidden_state
        unpadded_long = model(long_clip).last_hidden_state
        unmasked = model(batch).last_hidden_state
    real_tokens = 1 + num_patches(CLASSIFIER_FRAMES)
    assert max_diff(masked[1, 0], unpadded_short[0, 0]) <= 1e-5
    assert max_diff(masked[1, :real_tokens], unpadded_short[0]) <= 1e-5
    assert max_diff(masked[0], unpadded_long[0]) <= 1e-5
    assert max_diff(unmasked[1, 0], unpadded_short[0, 0]) > 1e-2  # without the mask the padding changes the CLS


def test_a_patch_row_with_any_real_frame_counts_as_real():
    model = tiny_model(EATModel)
    batch, _, _, _ = padded_batch()
    frame_mask = torch.ones(2, 96, dtype=torch.long)
    frame_mask[1, 70:] = 0
    row_mask = torch.ones(2, 96, dtype=torch.long)
    row_mask[1, 80:] = 0
    with torch.no_grad():
        assert torch.equal(
            model(batch, attention_mask=frame_mask).last_hidden_state,
            model(batch, attention_mask=row_mask).last_hidden_state,
        )


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classifier_with_attention_mask_matches_unpadded_input(pooling):
    model = tiny_model(EATForAudioClassification, classifier_pooling=pooling)
    batch, attention_mask, _, short_clip = padded_batch()
    with torch.no_grad():
        masked = model(batch, attention_mask=attention_mask).logits
        assert max_diff(masked[1], model(short_clip).logits[0]) <= 1e-5


# ---------------------------------------------------------------------------------------------------------------------
# classification head


def test_single_label_loss_is_cross_entropy():
    model = tiny_model(EATForAudioClassification)
    labels = torch.tensor([2, 0])
    outputs = model(model_inputs(), labels=labels)
    assert model.config.problem_type == "single_label_classification"
    assert torch.allclose(outputs.loss, F.cross_entropy(outputs.logits, labels), atol=1e-6)


def test_multi_hot_labels_use_binary_cross_entropy():
    model = tiny_model(EATForAudioClassification)
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    outputs = model(model_inputs(), labels=labels)
    assert model.config.problem_type == "multi_label_classification"
    assert torch.allclose(outputs.loss, F.binary_cross_entropy_with_logits(outputs.logits, labels), atol=1e-6)
    assert not torch.allclose(outputs.loss, F.cross_entropy(outputs.logits, labels), atol=1e-3)


def test_single_output_uses_mean_squared_error():
    model = tiny_model(EATForAudioClassification, num_labels=1)
    labels = torch.tensor([0.5, -1.0])
    outputs = model(model_inputs(), labels=labels)
    assert model.config.problem_type == "regression"
    assert torch.allclose(outputs.loss, F.mse_loss(outputs.logits.squeeze(-1), labels), atol=1e-6)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pooling_options(pooling):
    model = tiny_model(EATForAudioClassification, classifier_pooling=pooling)
    inputs = model_inputs()
    with torch.no_grad():
        hidden = model.eat(inputs).last_hidden_state
        pooled = hidden[:, 0] if pooling == "cls" else hidden[:, 1:].mean(dim=1)
        expected = model.classifier(F.layer_norm(pooled, (64,), model.fc_norm.weight, model.fc_norm.bias, 1e-6))
        assert max_diff(model(inputs).logits, expected) <= 1e-6


def test_fc_norm_can_be_left_out():
    model = tiny_model(EATForAudioClassification, use_fc_norm=False)
    inputs = model_inputs()
    assert not any(name.startswith("fc_norm") for name in model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(inputs).logits, model.classifier(model.eat(inputs).pooler_output))


def test_freeze_feature_encoder_freezes_exactly_the_patch_embedding():
    model = tiny_model(EATForAudioClassification)
    model.freeze_feature_encoder()
    frozen = {name for name, param in model.named_parameters() if not param.requires_grad}
    assert frozen == PATCH_EMBEDDING_PARAMS
    model.train()
    model(model_inputs(), labels=torch.tensor([0, 1])).loss.backward()
    for name, param in model.named_parameters():
        assert (param.grad is None) == (name in PATCH_EMBEDDING_PARAMS), name


def test_a_few_training_steps_lower_the_loss():
    model = tiny_model(EATForAudioClassification).train()
    inputs, labels = model_inputs(batch_size=6), torch.tensor([0, 1, 2, 0, 1, 2])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    # At init every clip's CLS output is nearly the same (std ~0.004 across clips): the first steps move slowly.
    for _ in range(10):
        loss = model(inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# ---------------------------------------------------------------------------------------------------------------------
# stochastic depth, checkpointing, compile, meta device


def test_drop_path_is_active_only_in_training():
    with_drop_path = tiny_model(EATModel, drop_path_rate=0.5)
    without = tiny_model(EATModel)
    without.load_state_dict(with_drop_path.state_dict())
    inputs = model_inputs(batch_size=8)
    with torch.no_grad():
        assert torch.equal(with_drop_path(inputs).last_hidden_state, without(inputs).last_hidden_state)
        with_drop_path.train()
        torch.manual_seed(0)
        first = with_drop_path(inputs).last_hidden_state
        second = with_drop_path(inputs).last_hidden_state
    assert not torch.equal(first, second)
    assert max_diff(first, without(inputs).last_hidden_state) > 1e-2


def gradients(model, inputs, **forward_kwargs) -> dict[str, torch.Tensor]:
    model.zero_grad()
    model(inputs, **forward_kwargs).loss.backward()
    return {name: param.grad.clone() for name, param in model.named_parameters() if param.grad is not None}


def count_block_calls(model) -> list[int]:
    calls = [0]
    model.get_submodule("eat.layers.0.mlp").register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


# transformers 5.23 renamed gradient_checkpointing_enable (now a deprecated alias) to activation_checkpointing_enable.
CHECKPOINTING_METHODS = [
    name for name in ("activation_checkpointing_enable", "gradient_checkpointing_enable") if hasattr(EATModel, name)
]


def enable_checkpointing(model, method=CHECKPOINTING_METHODS[0]):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        getattr(model, method)()
        assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing


@pytest.mark.parametrize("enable", CHECKPOINTING_METHODS)
def test_checkpointing_gives_the_same_gradients(enable):
    reference = tiny_model(EATForAudioClassification).train()
    checkpointed = copy.deepcopy(reference)
    enable_checkpointing(checkpointed, enable)
    calls = count_block_calls(checkpointed)
    inputs, labels = model_inputs(), torch.tensor([0, 2])
    expected = gradients(reference, inputs, labels=labels)
    actual = gradients(checkpointed, inputs, labels=labels)
    assert calls[0] == 2  # the block ran again in the backward pass: checkpointing is really on
    assert actual.keys() == expected.keys() and len(actual) == len(list(reference.parameters()))
    for name in expected:
        assert max_diff(actual[name], expected[name]) <= 1e-6, name


def test_checkpointing_in_pretraining_gives_the_same_gradients():
    reference = tiny_model(EATForPreTraining).train()
    checkpointed = copy.deepcopy(reference)
    enable_checkpointing(checkpointed)
    calls = count_block_calls(checkpointed)
    inputs = model_inputs()
    expected = gradients(reference, inputs, generator=torch.Generator().manual_seed(5))
    actual = gradients(checkpointed, inputs, generator=torch.Generator().manual_seed(5))
    assert calls[0] == 2
    assert actual.keys() == expected.keys()
    assert not any(name.startswith("teacher.") for name in actual)
    for name in expected:
        assert max_diff(actual[name], expected[name]) <= 1e-6, name


def test_torch_compile_traces_the_encoder():
    # A recording backend runs dynamo's tracing (graph breaks, guards) without inductor's code generation, which
    # takes over 30 s on a small CPU.
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    model = tiny_model(EATModel)
    inputs = model_inputs()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend=recording_backend, fullgraph=True)
    with torch.no_grad():
        assert max_diff(compiled(inputs).last_hidden_state, model(inputs).last_hidden_state) <= 1e-6
    assert len(graphs) == 1


def test_init_on_the_meta_device():
    with torch.device("meta"):
        model = EATModel(tiny_config(max_length=CLASSIFIER_FRAMES, num_labels=3))
    assert all(param.device.type == "meta" for param in model.parameters())
    assert model.embeddings.position_embeddings.device.type == "meta"


@pytest.mark.parametrize("model_class", [EATModel, EATForAudioClassification, EATForPreTraining])
def test_from_pretrained_restores_the_position_table(tmp_path, model_class):
    config = tiny_config(max_length=CLASSIFIER_FRAMES, num_labels=3, max_time_patches=12)
    torch.manual_seed(0)
    model_class(config).save_pretrained(tmp_path)
    reloaded = model_class.from_pretrained(tmp_path)
    expected = sincos_position_table(12, 8, 64)[None]
    fresh = EATModel(config).embeddings.position_embeddings
    assert torch.equal(fresh, expected)
    tables = [module.position_embeddings for name, module in reloaded.named_modules() if name.endswith("embeddings")
              and hasattr(module, "position_embeddings")]
    assert len(tables) == (2 if model_class is EATForPreTraining else 1)  # the teacher has its own
    for table in tables:
        assert table.device.type == "cpu"
        assert torch.equal(table, expected)


# ---------------------------------------------------------------------------------------------------------------------
# common attributes, initialisation, dtype


@pytest.mark.parametrize("model_class", [EATModel, EATForAudioClassification, EATForPreTraining])
def test_common_attributes(model_class):
    model = tiny_model(model_class)
    assert model.main_input_name == "input_values"
    assert list(inspect.signature(model.forward).parameters)[:2] == ["input_values", "attention_mask"]
    encoder = model if model_class is EATModel else model.eat
    assert model.get_input_embeddings() is encoder.embeddings.patch_embeddings
    assert model.base_model is encoder


def test_initialisation_follows_the_config():
    model = tiny_model(EATForAudioClassification, initializer_range=0.05)
    layer = model.eat.layers[0]
    assert layer.mlp.fc1.weight.std().item() == pytest.approx(0.05, rel=0.1)
    assert torch.count_nonzero(layer.attention.qkv_proj.bias) == 0
    assert torch.equal(layer.attention_norm.weight, torch.ones(64))
    assert torch.count_nonzero(layer.output_norm.bias) == 0
    assert model.eat.embeddings.cls_token.std().item() == pytest.approx(1.0, rel=0.35)
    # xavier uniform on the patch conv seen as a (64, 256) matrix: bound sqrt(6 / 320), std bound / sqrt(3)
    patch_weight = model.eat.embeddings.patch_embeddings.projection.weight
    assert patch_weight.abs().max().item() <= (6 / 320) ** 0.5
    assert patch_weight.std().item() == pytest.approx((6 / 320 / 3) ** 0.5, rel=0.05)
    # the head keeps the official 0.02 truncated normal, whatever initializer_range says
    assert model.classifier.weight.std().item() == pytest.approx(0.02, rel=0.35)
    assert model.classifier.weight.abs().max().item() <= 2.0 + 1e-6


def test_ignore_mismatched_sizes_reinitialises_a_new_head(tmp_path):
    tiny_model(EATForAudioClassification).save_pretrained(tmp_path)
    with pytest.raises(RuntimeError, match="ignore_mismatched_sizes"):
        EATForAudioClassification.from_pretrained(tmp_path, num_labels=5)
    model, info = EATForAudioClassification.from_pretrained(
        tmp_path, num_labels=5, ignore_mismatched_sizes=True, output_loading_info=True
    )
    assert {key for key, *_ in info["mismatched_keys"]} == {"classifier.weight", "classifier.bias"}
    assert model(model_inputs()).logits.shape == (2, 5)
    assert model.classifier.weight.std().item() == pytest.approx(0.02, rel=0.35)


def test_bfloat16_loading_runs_and_stays_close(tmp_path):
    model = tiny_model(EATForAudioClassification)
    model.save_pretrained(tmp_path)
    half = EATForAudioClassification.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert half.eat.layers[0].mlp.fc1.weight.dtype == torch.bfloat16
    inputs = model_inputs()
    with torch.no_grad():
        logits = half(inputs.to(torch.bfloat16)).logits
        assert logits.dtype == torch.bfloat16
        assert max_diff(logits.float(), model(inputs).logits) < 0.1
