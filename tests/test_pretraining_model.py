"""Tests for the pre-training model (modeling_eat/modeling_eat.py: EATForPreTraining, EATTeacher, EATCNNDecoder,
EATMaskSpecDecoder, utterance_frame_loss), against hand computations of EAT.md §2.5 and §3.

Every model is the `tiny` preset on 128-frame clips (an 8 x 8 patch grid), so the whole file runs in seconds.
"""

import logging
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
import transformers

from modeling_eat import EATForAudioClassification, EATForPreTraining, EATModel
from modeling_eat.modeling_eat import EATCNNDecoder, EATMaskSpecDecoder, EATTeacher, utterance_frame_loss

from eat_testing import NUM_PATCHES, NUM_TIME_PATCHES, build, seeded, spectrogram, tiny_config


PATCH = 16





def draw_masks(model: EATForPreTraining, batch_size: int = 2, seed: int = 0) -> torch.Tensor:
    return model.mask_generator(batch_size, NUM_TIME_PATCHES, 8, seeded(seed))


def patches_of(input_values: torch.Tensor) -> torch.Tensor:
    """`(batch, frames, 128)` → `(batch, patches, 256)`; patch `t * 8 + f` holds frames `16t..`, bins `16f..`."""
    batch_size = input_values.shape[0]
    grid = input_values.reshape(batch_size, -1, PATCH, 8, PATCH).permute(0, 1, 3, 2, 4)
    return grid.reshape(batch_size, -1, PATCH * PATCH)


def set_patch(input_values: torch.Tensor, clip: int, patch: int, value: torch.Tensor):
    time, freq = divmod(patch, 8)
    input_values[clip, time * PATCH : (time + 1) * PATCH, freq * PATCH : (freq + 1) * PATCH] = value


def same_weights(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    first_state, second_state = first.state_dict(), second.state_dict()
    return first_state.keys() == second_state.keys() and all(
        torch.equal(first_state[name], second_state[name]) for name in first_state
    )


def randomize_(module: torch.nn.Module, seed: int, std: float = 0.3):
    generator = seeded(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * std)


# ------------------------------------------------------------------------------------------------------------------
# Student
# ------------------------------------------------------------------------------------------------------------------


def test_student_sees_cls_and_visible_patches_only():
    model = build().eval()
    input_values = spectrogram()
    masks = draw_masks(model)  # [2 clips * 2 clones, 64], 80% hidden
    num_visible = int((~masks[0]).sum())
    assert num_visible == int(NUM_PATCHES * 0.2 + 1e-6) == 12

    with torch.no_grad():
        student = model.eat(input_values, bool_masked_pos=masks).last_hidden_state
        assert student.shape == (4, 1 + num_visible, 64)
        assert torch.equal(model(input_values, bool_masked_pos=masks).last_hidden_state, student)

        # Patches hidden in every clone of their clip never reach the student: new values there change nothing.
        hidden_everywhere = masks.view(2, 2, NUM_PATCHES).all(dim=1)
        changed = input_values.clone()
        for clip, patch in hidden_everywhere.nonzero().tolist():
            set_patch(changed, clip, patch, 100.0 + torch.randn(PATCH, PATCH))
        assert torch.equal(model.eat(changed, bool_masked_pos=masks).last_hidden_state, student)

        # A visible one does.
        visible_patch = int((~masks[0]).nonzero()[0])
        set_patch(changed, 0, visible_patch, 100.0)
        assert not torch.allclose(model.eat(changed, bool_masked_pos=masks).last_hidden_state[0], student[0])


def test_patch_embedding_runs_once_per_clip_and_clones_share_it():
    model = build().eval()
    input_values = spectrogram()
    # Three clones per clip, all with the clip's first mask.
    masks = draw_masks(model)[::2].repeat_interleave(3, dim=0)
    batch_sizes_seen = []
    hook = model.eat.embeddings.patch_embeddings.register_forward_hook(
        lambda module, args, output: batch_sizes_seen.append(args[0].shape[0])
    )
    try:
        with torch.no_grad():
            student = model.eat(input_values, bool_masked_pos=masks).last_hidden_state
    finally:
        hook.remove()
    assert batch_sizes_seen == [2]
    assert student.shape[0] == 6
    for clip in range(2):
        rows = student[3 * clip : 3 * clip + 3]
        assert torch.equal(rows[0], rows[1]) and torch.equal(rows[0], rows[2])
    assert not torch.allclose(student[0], student[3])


# ------------------------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["eat", "maskspec"])
def test_loss_falls_on_a_fixed_batch(objective):
    # Measured (6 steps, AdamW lr 1e-3): eat 16.21 -> 15.09, maskspec 1.046 -> 1.000.
    model = build(pretraining_objective=objective).train()
    input_values = spectrogram(seed=1)
    masks = draw_masks(model, seed=2)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(6):
        loss = model(input_values, bool_masked_pos=masks, generator=seeded(3)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.update_teacher()
        losses.append(loss.item())
    assert all(math.isfinite(value) for value in losses)
    assert losses[-1] < 0.97 * losses[0], losses
    if objective == "eat":
        assert int(model.teacher.num_updates) == 6
        assert not same_weights(model.teacher.encoder, model.eat)
    else:
        assert model.teacher is None and model.update_teacher() is None


def test_teacher_gets_no_gradient_and_stays_in_eval_mode():
    # Dropout everywhere: a teacher left in train mode would give different targets on each call.
    model = build(hidden_dropout_prob=0.5, drop_path_rate=0.3)
    model.train()
    assert model.eat.training and model.decoder.training
    assert not any(module.training for module in model.teacher.modules())
    assert not any(parameter.requires_grad for parameter in model.teacher.parameters())

    input_values = spectrogram()
    first, _ = model.teacher(input_values)
    second, _ = model.teacher(input_values)
    assert torch.equal(first, second)

    model(input_values, generator=seeded(0)).loss.backward()
    assert all(parameter.grad is None for parameter in model.teacher.parameters())
    assert all(parameter.grad is not None for parameter in model.eat.parameters())
    assert all(parameter.grad is not None for parameter in model.decoder.parameters())


# ------------------------------------------------------------------------------------------------------------------
# EMA teacher
# ------------------------------------------------------------------------------------------------------------------


def test_decay_is_annealed_linearly_then_constant():
    teacher = EATTeacher(tiny_config(ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=10))
    assert float(teacher.ema_decay(0)) == pytest.approx(0.9)
    assert float(teacher.ema_decay(5)) == pytest.approx(0.945)
    assert float(teacher.ema_decay(10)) == pytest.approx(0.99)
    assert float(teacher.ema_decay(1000)) == pytest.approx(0.99)
    assert float(teacher.ema_decay()) == pytest.approx(0.9)
    teacher.num_updates.fill_(4)
    assert float(teacher.ema_decay()) == pytest.approx(0.936)


def test_ema_update_matches_hand_computation():
    model = build(ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=10)
    names = [name for name, _ in model.teacher.encoder.named_parameters()]
    assert names == [name for name, _ in model.eat.named_parameters()]

    for expected_decay, start_step in [(0.9, 0), (0.99, 10)]:
        model.teacher.num_updates.fill_(start_step)
        randomize_(model.eat, seed=start_step)  # the student moves, as after an optimizer step
        teacher_before = {name: p.clone() for name, p in model.teacher.encoder.named_parameters()}
        student = dict(model.eat.named_parameters())

        assert model.update_teacher() == pytest.approx(expected_decay)

        assert int(model.teacher.num_updates) == start_step + 1
        for name, parameter in model.teacher.encoder.named_parameters():
            expected = expected_decay * teacher_before[name] + (1 - expected_decay) * student[name]
            torch.testing.assert_close(parameter, expected, rtol=0, atol=1e-6, msg=name)
            assert not torch.equal(parameter, teacher_before[name]), name


def test_fresh_teacher_is_an_exact_copy_of_the_student():
    model = build()
    assert same_weights(model.teacher.encoder, model.eat)
    assert int(model.teacher.num_updates) == 0
    # A copy, not shared storage: the EMA must not write into the student.
    assert model.teacher.encoder.embeddings.cls_token.data_ptr() != model.eat.embeddings.cls_token.data_ptr()


def test_teacher_copies_the_student_loaded_from_an_encoder_only_folder(tmp_path):
    torch.manual_seed(1)
    encoder = EATModel(tiny_config())
    encoder.save_pretrained(tmp_path)

    model = EATForPreTraining.from_pretrained(tmp_path)

    assert same_weights(model.eat, encoder)
    assert same_weights(model.teacher.encoder, encoder)
    assert int(model.teacher.num_updates) == 0
    assert not any(parameter.requires_grad for parameter in model.teacher.parameters())
    assert all(parameter.requires_grad for parameter in model.eat.parameters())


def test_loaded_teacher_keeps_its_own_weights(tmp_path):
    model = build()
    randomize_(model.teacher.encoder, seed=5)
    model.teacher.num_updates.fill_(7)
    model.save_pretrained(tmp_path)

    loaded = EATForPreTraining.from_pretrained(tmp_path)

    assert same_weights(loaded.teacher.encoder, model.teacher.encoder)
    assert not same_weights(loaded.teacher.encoder, loaded.eat)
    assert int(loaded.teacher.num_updates) == 7
    # from_pretrained materialises every weight as trainable; the teacher must come back frozen.
    assert not any(parameter.requires_grad for parameter in loaded.teacher.parameters())


# ------------------------------------------------------------------------------------------------------------------
# Targets and loss
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("top_k", [3, 2, 1])
def test_teacher_targets_match_hand_computation(top_k):
    model = build(average_top_k_layers=top_k)
    randomize_(model.teacher.encoder, seed=2, std=0.05)
    input_values = spectrogram()

    # The blocks' feed-forward outputs, recorded independently of `output_ffn_outputs`.
    ffn_outputs = []
    hooks = [
        layer.mlp.register_forward_hook(lambda module, args, output: ffn_outputs.append(output))
        for layer in model.teacher.encoder.layers
    ]
    try:
        frame_targets, utterance_targets = model.teacher(input_values)
    finally:
        for hook in hooks:
            hook.remove()
    recorded = model.teacher.encoder(input_values, output_ffn_outputs=True).ffn_outputs
    assert len(recorded) == len(ffn_outputs) == 3
    for hooked, returned in zip(ffn_outputs, recorded):
        assert torch.equal(hooked, returned)

    normalised = []
    for layer_output in ffn_outputs[-top_k:]:
        patches = layer_output[:, 1:].double()  # CLS dropped
        mean = patches.mean(dim=1, keepdim=True)  # per sample and channel, over the patches
        var = patches.var(dim=1, unbiased=False, keepdim=True)
        normalised.append((patches - mean) / torch.sqrt(var + 1e-5))
    average = sum(normalised) / top_k
    channel_var = average.var(-1, unbiased=False, keepdim=True)
    expected = (average - average.mean(-1, keepdim=True)) / torch.sqrt(channel_var + 1e-5)

    assert frame_targets.shape == (2, NUM_PATCHES, 64) and frame_targets.dtype == torch.float32
    torch.testing.assert_close(frame_targets.double(), expected, rtol=0, atol=2e-5)
    torch.testing.assert_close(utterance_targets.double(), expected.mean(dim=1), rtol=0, atol=2e-5)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_utterance_frame_loss_matches_hand_computation(reduction):
    generator = seeded(0)
    rows, num_masked, dim = 6, 10, 64
    frame_predictions, frame_targets = torch.randn(2, rows, num_masked, dim, generator=generator)
    utterance_predictions, utterance_targets = torch.randn(2, rows, dim, generator=generator)

    loss, frame_loss, utterance_loss = utterance_frame_loss(
        frame_predictions, frame_targets, utterance_predictions, utterance_targets, 0.5, reduction
    )

    expected_frame = (frame_predictions - frame_targets).pow(2).sum(-1).mean() / math.sqrt(dim)
    per_row = (utterance_predictions - utterance_targets).pow(2).sum(-1) / math.sqrt(dim)
    expected_utterance = per_row.sum() if reduction == "sum" else per_row.mean()
    torch.testing.assert_close(frame_loss, expected_frame)
    torch.testing.assert_close(utterance_loss, expected_utterance)
    torch.testing.assert_close(loss, expected_frame + 0.5 * expected_utterance)
    with pytest.raises(ValueError, match="utterance_loss_reduction must be one of"):
        utterance_frame_loss(frame_predictions, frame_targets, utterance_predictions, utterance_targets, 1.0, "max")


def fairseq_objective(predictions, targets, cls_predictions, cls_targets, cls_loss: float = 1.0) -> torch.Tensor:
    """The official reduction, written from EAT.md §3 alone: the d2v loss (elementwise MSE / sqrt(D), reduction
    none) summed; the CLS MSE / sqrt(D) times `cls_loss * sample_size`, summed; fairseq's ModelCriterion sums both
    and the trainer divides the gradients by `sample_size`, the number of masked patches of the batch."""
    scale = 1.0 / math.sqrt(predictions.shape[-1])
    sample_size = predictions.shape[0] * predictions.shape[1]
    d2v_loss = ((predictions - targets) ** 2 * scale).sum()
    cls = ((cls_predictions - cls_targets) ** 2 * scale).sum(dim=-1) * cls_loss * sample_size
    return (d2v_loss + cls.sum()) / sample_size


def test_default_loss_and_gradients_are_the_official_fairseq_objective():
    model = build().train()
    randomize_(model.teacher.encoder, seed=3, std=0.05)
    input_values, masks = spectrogram(), draw_masks(model)
    assert model.config.utterance_loss_reduction == "sum" and model.config.utterance_loss_weight == 1.0

    out = model(input_values, bool_masked_pos=masks, generator=seeded(0))
    with torch.no_grad():
        frame_targets, _ = model.teacher(input_values)
    # The teacher's targets of each clip, for each of its clones; the utterance target is their mean over all patches.
    targets = frame_targets.repeat_interleave(2, dim=0)
    num_masked = int(masks[0].sum())
    official = fairseq_objective(
        out.logits[masks].view(4, num_masked, 64),
        targets[masks].view(4, num_masked, 64),
        out.last_hidden_state[:, 0],
        targets.mean(dim=1),
    )
    torch.testing.assert_close(out.loss, official)

    ours = torch.autograd.grad(out.loss, list(model.eat.parameters()) + list(model.decoder.parameters()),
                               retain_graph=True)
    reference = torch.autograd.grad(official, list(model.eat.parameters()) + list(model.decoder.parameters()))
    for mine, theirs in zip(ours, reference):
        torch.testing.assert_close(mine, theirs)


def test_mean_reduction_weighs_the_utterance_loss_per_row():
    input_values = spectrogram()
    summed, averaged = (build(utterance_loss_reduction=reduction).eval() for reduction in ("sum", "mean"))
    masks = draw_masks(summed)
    with torch.no_grad():
        summed_out = summed(input_values, bool_masked_pos=masks, generator=seeded(0))
        averaged_out = averaged(input_values, bool_masked_pos=masks, generator=seeded(0))
    # Same weights, masks and noise: 2 clips x 2 clones = 4 rows, so the official sum is 4 times the per-row mean.
    torch.testing.assert_close(summed_out.frame_loss, averaged_out.frame_loss)
    torch.testing.assert_close(summed_out.utterance_loss, 4 * averaged_out.utterance_loss)
    torch.testing.assert_close(averaged_out.loss, averaged_out.frame_loss + averaged_out.utterance_loss)


def test_eat_loss_is_the_objective_on_masked_patches_of_hand_made_targets():
    model = build()
    randomize_(model.teacher.encoder, seed=3, std=0.05)
    input_values = spectrogram()
    masks = draw_masks(model)
    out = model(input_values, bool_masked_pos=masks, generator=seeded(0))

    frame_targets, utterance_targets = model.teacher(input_values)
    frame_targets = frame_targets.repeat_interleave(2, dim=0)
    num_masked = int(masks[0].sum())
    predictions = out.logits[masks].view(4, num_masked, 64)
    targets = frame_targets[masks].view(4, num_masked, 64)
    expected = utterance_frame_loss(
        predictions, targets, out.last_hidden_state[:, 0], utterance_targets.repeat_interleave(2, dim=0), 1.0, "sum"
    )
    torch.testing.assert_close(out.loss, expected[0])
    torch.testing.assert_close(out.frame_loss, expected[1])
    torch.testing.assert_close(out.utterance_loss, expected[2])
    assert torch.equal(out.bool_masked_pos, masks)
    assert out.logits.shape == (4, NUM_PATCHES, 64)
    assert out.target_std > 0.5 and out.prediction_std > 0


# ------------------------------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["eat", "maskspec"])
def test_same_generator_seed_gives_the_same_loss(objective):
    model = build(pretraining_objective=objective).eval()
    input_values = spectrogram()
    with torch.no_grad():
        first = model(input_values, generator=seeded(11))
        again = model(input_values, generator=seeded(11))
        other = model(input_values, generator=seeded(12))
    assert torch.equal(first.bool_masked_pos, again.bool_masked_pos)
    assert torch.equal(first.loss, again.loss)
    assert not torch.equal(first.bool_masked_pos, other.bool_masked_pos)
    assert first.loss != other.loss


def test_decoder_noise_follows_the_generator():
    model = build().eval()
    input_values, masks = spectrogram(), draw_masks(model)
    with torch.no_grad():
        first = model(input_values, bool_masked_pos=masks, generator=seeded(1))
        again = model(input_values, bool_masked_pos=masks, generator=seeded(1))
        other = model(input_values, bool_masked_pos=masks, generator=seeded(2))
    assert torch.equal(first.loss, again.loss) and torch.equal(first.logits, again.logits)
    assert first.loss != other.loss
    # Only the noise differs: the student and its targets do not depend on the generator once the mask is given.
    assert torch.equal(first.last_hidden_state, other.last_hidden_state)
    assert torch.equal(first.utterance_loss, other.utterance_loss)


# ------------------------------------------------------------------------------------------------------------------
# CNN decoder
# ------------------------------------------------------------------------------------------------------------------


def reference_cnn_decoder(decoder: EATCNNDecoder, tokens: torch.Tensor, num_time_patches: int) -> torch.Tensor:
    """EAT.md §2.5 written out: grouped conv → channel LayerNorm (no affine, eps 1e-5) → GELU, + residual when the
    block keeps the width; then a linear projection of every position."""
    config = decoder.config
    batch_size, num_patches, channels = tokens.shape
    grid = tokens.transpose(1, 2).reshape(batch_size, channels, num_time_patches, num_patches // num_time_patches)
    for layer in decoder.layers:
        out = F.conv2d(
            grid,
            layer.conv.weight,
            layer.conv.bias,
            padding=config.decoder_kernel_size // 2,
            groups=config.decoder_groups,
        )
        mean = out.mean(dim=1, keepdim=True)
        var = out.var(dim=1, unbiased=False, keepdim=True)
        out = (out - mean) / torch.sqrt(var + 1e-5)
        out = 0.5 * out * (1 + torch.erf(out / math.sqrt(2)))
        grid = out + grid if out.shape == grid.shape else out
    return grid.flatten(2).transpose(1, 2) @ decoder.projection.weight.T + decoder.projection.bias


@pytest.mark.parametrize("decoder_hidden_size", [64, 32])  # 32: the first block changes width, so no residual there
def test_cnn_decoder_matches_reference_forward(decoder_hidden_size):
    model = build(decoder_hidden_size=decoder_hidden_size, decoder_num_layers=3)
    randomize_(model.decoder, seed=4)
    tokens = torch.randn(3, NUM_PATCHES, 64, generator=seeded(5))
    with torch.no_grad():
        predictions = model.decoder(tokens, NUM_TIME_PATCHES)
        expected = reference_cnn_decoder(model.decoder, tokens, NUM_TIME_PATCHES)
    assert predictions.shape == (3, NUM_PATCHES, 64)
    torch.testing.assert_close(predictions, expected, rtol=1e-5, atol=1e-5)

    # The residual is there: dropping it gives something else.
    with torch.no_grad():
        for layer in model.decoder.layers:
            layer.conv.weight.mul_(0.0)
            layer.conv.bias.mul_(0.0)
        # Zero convs make every block output 0 (LayerNorm of a constant), so only the residual path carries the input.
        passthrough = model.decoder(tokens, NUM_TIME_PATCHES)
    if decoder_hidden_size == 64:
        torch.testing.assert_close(passthrough, model.decoder.projection(tokens))
    else:
        torch.testing.assert_close(passthrough, model.decoder.projection.bias.expand_as(passthrough))


def test_decoder_input_is_student_output_with_gaussian_noise_at_masked_slots():
    model = build(mask_noise_std=0.25).eval()
    assert not any("mask" in name for name, _ in model.decoder.named_parameters())
    input_values, masks = spectrogram(), draw_masks(model)
    captured = []
    hook = model.decoder.register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    try:
        with torch.no_grad():
            out = model(input_values, bool_masked_pos=masks, generator=seeded(6))
            model(input_values, bool_masked_pos=masks, generator=seeded(7))
    finally:
        hook.remove()
    decoder_input, other_input = captured

    assert decoder_input.shape == (4, NUM_PATCHES, 64)
    # Visible slots: the student's patch tokens, in grid order (CLS dropped).
    visible = decoder_input[~masks].view(4, -1, 64)
    assert torch.equal(visible, out.last_hidden_state[:, 1:])
    # Masked slots: fresh N(0, 0.25^2) noise, not a learned token.
    noise = decoder_input[masks]
    assert abs(noise.mean().item()) < 0.01
    assert noise.std().item() == pytest.approx(0.25, rel=0.05)
    assert not torch.equal(noise, other_input[masks])
    assert torch.equal(decoder_input[~masks], other_input[~masks])

    with torch.no_grad():
        torch.testing.assert_close(
            out.logits, reference_cnn_decoder(model.decoder, decoder_input, NUM_TIME_PATCHES), rtol=1e-5, atol=1e-5
        )


# ------------------------------------------------------------------------------------------------------------------
# MaskSpec
# ------------------------------------------------------------------------------------------------------------------


def test_maskspec_masks_75_percent_at_random_and_has_no_teacher():
    model = build(pretraining_objective="maskspec", clone_batch=None)
    assert model.config.clone_batch == 1 and model.teacher is None
    assert isinstance(model.decoder, EATMaskSpecDecoder)
    input_values = spectrogram(batch_size=3)
    with torch.no_grad():
        out = model(input_values, generator=seeded(0))
    masks = out.bool_masked_pos
    assert masks.shape == (3, NUM_PATCHES)
    assert masks.sum(dim=1).tolist() == [48, 48, 48]
    assert len({tuple(row.tolist()) for row in masks}) == 3
    assert out.last_hidden_state.shape == (3, 1 + 16, 64)
    assert out.logits.shape == (3, NUM_PATCHES, PATCH * PATCH)


@pytest.mark.parametrize("norm_patch_loss", [False, True])
def test_maskspec_loss_is_mse_over_masked_spectrogram_patches(norm_patch_loss):
    model = build(pretraining_objective="maskspec", clone_batch=None, maskspec_norm_patch_loss=norm_patch_loss)
    input_values = spectrogram()
    patches = patches_of(input_values)
    assert torch.equal(patches[1, 8 * 3 + 5], input_values[1, 48:64, 80:96].flatten())
    if norm_patch_loss:
        mean = patches.mean(dim=-1, keepdim=True)
        var = patches.var(dim=-1, unbiased=False, keepdim=True)
        patches = (patches - mean) / torch.sqrt(var + 1e-6)
    masks = model.mask_generator(2, NUM_TIME_PATCHES, 8, seeded(1))

    def loss_with(offset: torch.Tensor) -> torch.Tensor:
        hook = model.decoder.register_forward_hook(lambda module, args, output: output + offset)
        try:
            with torch.no_grad():
                return model(input_values, bool_masked_pos=masks)
        finally:
            hook.remove()

    out = loss_with(torch.zeros(()))
    expected = (out.logits - patches)[masks].pow(2).mean()
    torch.testing.assert_close(out.loss, expected)
    assert out.loss == out.frame_loss and out.utterance_loss is None

    # Predictions of visible patches do not count; those of masked patches do.
    on_visible = (~masks).unsqueeze(-1) * 100.0
    assert torch.equal(loss_with(on_visible).loss, out.loss)
    on_one_masked = torch.zeros(2, NUM_PATCHES, 1)
    on_one_masked[0, int(masks[0].nonzero()[0])] = 1.0
    assert loss_with(on_one_masked).loss > out.loss + 1e-3


# ------------------------------------------------------------------------------------------------------------------
# Saving and loading
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["eat", "maskspec"])
def test_save_and_load_round_trip_everything(objective, tmp_path):
    model = build(pretraining_objective=objective)
    randomize_(model, seed=8, std=0.01)  # no part equal to its init, so nothing can pass by re-initialisation
    if objective == "eat":
        model.teacher.num_updates.fill_(123)
    model.save_pretrained(tmp_path)

    loaded, info = EATForPreTraining.from_pretrained(tmp_path, output_loading_info=True)

    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert loaded.config.pretraining_objective == objective
    assert same_weights(loaded, model)
    assert same_weights(loaded.decoder, model.decoder)
    if objective == "eat":
        assert same_weights(loaded.teacher, model.teacher)
        assert int(loaded.teacher.num_updates) == 123
        assert float(loaded.teacher.ema_decay()) == pytest.approx(float(model.teacher.ema_decay()))
    input_values = spectrogram()
    with torch.no_grad():
        loaded_loss = loaded(input_values, generator=seeded(0)).loss
        assert torch.equal(loaded_loss, model(input_values, generator=seeded(0)).loss)


class RecordingHandler(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize("objective", ["eat", "maskspec"])
def test_encoder_and_classifier_load_the_student_from_a_pretraining_folder(objective, tmp_path):
    model = build(pretraining_objective=objective)
    randomize_(model, seed=9, std=0.01)
    model.save_pretrained(tmp_path)

    handler = RecordingHandler()
    loggers = [transformers.utils.logging.get_logger("transformers"), logging.getLogger("modeling_eat")]
    verbosity = transformers.utils.logging.get_verbosity()
    transformers.utils.logging.set_verbosity_warning()
    for logger in loggers:
        logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            encoder, encoder_info = EATModel.from_pretrained(tmp_path, output_loading_info=True)
            classifier, classifier_info = EATForAudioClassification.from_pretrained(
                tmp_path, num_labels=3, output_loading_info=True
            )
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        transformers.utils.logging.set_verbosity(verbosity)

    assert same_weights(encoder, model.eat)
    assert same_weights(classifier.eat, model.eat)
    assert not encoder_info["missing_keys"] and not encoder_info["unexpected_keys"]
    head = {"fc_norm.weight", "fc_norm.bias", "classifier.weight", "classifier.bias"}
    assert classifier_info["missing_keys"] == head
    assert not classifier_info["unexpected_keys"]

    # The capture works (the classifier's new head is reported, in one line rather than transformers' LOAD REPORT
    # table) and nothing talks about the left-out parts.
    messages = handler.messages + [str(warning.message) for warning in caught]
    head_messages = [message for message in messages if "classifier.weight" in message]
    assert len(head_messages) == 1 and "newly initialized" in head_messages[0]
    assert "\n" not in head_messages[0]
    assert not any("LOAD REPORT" in message for message in messages), messages
    assert not any("teacher" in message or "decoder" in message for message in messages), messages


# ------------------------------------------------------------------------------------------------------------------
# Mixed precision
# ------------------------------------------------------------------------------------------------------------------


def test_bf16_autocast_forward_keeps_the_teacher_fp32():
    model = build().train()
    input_values = spectrogram()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_values, generator=seeded(0))
    assert torch.isfinite(out.loss)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    model.update_teacher()
    assert all(parameter.dtype == torch.float32 for parameter in model.teacher.parameters())
    assert all(parameter.dtype == torch.float32 for parameter in model.eat.parameters())


def test_from_pretrained_in_bf16_keeps_the_teacher_fp32(tmp_path):
    build().save_pretrained(tmp_path)
    model = EATForPreTraining.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert all(parameter.dtype == torch.float32 for parameter in model.teacher.parameters())
    assert all(parameter.dtype == torch.bfloat16 for parameter in model.eat.parameters())
    assert all(parameter.dtype == torch.bfloat16 for parameter in model.decoder.parameters())

    # A bf16 student trains against its fp32 teacher without autocast; the EMA keeps fp32 weights.
    model.train()
    out = model(spectrogram().bfloat16(), generator=seeded(0))
    assert torch.isfinite(out.loss)
    out.loss.backward()
    teacher_before = model.teacher.encoder.embeddings.cls_token.clone()
    assert model.update_teacher() == pytest.approx(model.config.ema_decay)
    assert model.teacher.encoder.embeddings.cls_token.dtype == torch.float32
    assert int(model.teacher.num_updates) == 1
    # No optimizer step was taken, so the teacher only moved by the bf16 rounding of the student's copy of it.
    torch.testing.assert_close(model.teacher.encoder.embeddings.cls_token, teacher_before, rtol=0, atol=1e-2)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"mask_ratio": 1.5}, "mask_ratio"),
        ({"mask_ratio": 0.0}, "mask_ratio"),
        ({"mask_strategy": "block"}, "mask_strategy"),
        ({"clone_batch": 0}, "clone_batch"),
        ({"mask_block_size": 0}, "mask_block_size"),
    ],
)
def test_impossible_masking_settings_raise_when_the_model_is_built(overrides, field):
    # The config takes them (EATModel never masks); the mask generator, the one home of masking, refuses them.
    config = tiny_config(**overrides)
    with pytest.raises(ValueError, match=field):
        EATForPreTraining(config)


HALF_PRECISION_BUILDS = {
    "AutoModelForPreTraining.from_config(dtype=bf16)": lambda config: transformers.AutoModelForPreTraining.from_config(
        config, dtype=torch.bfloat16
    ),
    "_from_config(dtype=fp16)": lambda config: EATForPreTraining._from_config(config, dtype=torch.float16),
    ".to(torch.bfloat16)": lambda config: EATForPreTraining(config).to(torch.bfloat16),
    ".half()": lambda config: EATForPreTraining(config).half(),
}


@pytest.mark.parametrize("make_model", HALF_PRECISION_BUILDS.values(), ids=HALF_PRECISION_BUILDS.keys())
def test_the_teacher_stays_fp32_however_the_model_is_built_or_cast(make_model):
    model = make_model(tiny_config())
    assert {parameter.dtype for parameter in model.teacher.parameters()} == {torch.float32}
    assert model.teacher.num_updates.dtype == torch.long
    student_dtypes = {parameter.dtype for parameter in model.eat.parameters()}
    assert student_dtypes in ({torch.bfloat16}, {torch.float16})
    # A fresh teacher is the student's copy: exact when built in half precision; when cast after building, the
    # teacher keeps the weights the student's were rounded from.
    for teacher, student in zip(model.teacher.encoder.parameters(), model.eat.parameters()):
        assert torch.equal(teacher.to(student.dtype), student)


def fraction_moved_by_one_ema_update(model: EATForPreTraining, teacher_dtype: torch.dtype | None = None) -> float:
    """After one Adam step of the student (lr 5e-4), the share of a teacher weight matrix's entries one EMA update
    (decay 0.9998) changes, with the teacher as built or forced to `teacher_dtype`."""
    if teacher_dtype is not None:
        for parameter in model.teacher.parameters():  # `.to()` would not do it: the teacher keeps fp32
            parameter.data = parameter.data.to(teacher_dtype)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    model.train()
    model(spectrogram().to(next(model.eat.parameters()).dtype), generator=seeded(0)).loss.backward()
    optimizer.step()
    weight = model.teacher.encoder.layers[0].mlp.fc1.weight
    before = weight.detach().clone()
    model.update_teacher()
    return (weight != before).float().mean().item()


def test_one_ema_update_moves_the_whole_fp32_teacher_and_would_round_away_in_bf16():
    fractions = {}
    for teacher_dtype in ("as built", torch.bfloat16):
        torch.manual_seed(0)
        config = tiny_config(ema_decay=0.9998)
        model = transformers.AutoModelForPreTraining.from_config(config, dtype=torch.bfloat16)
        forced = teacher_dtype if isinstance(teacher_dtype, torch.dtype) else None
        fractions[teacher_dtype] = fraction_moved_by_one_ema_update(model, forced)
    # Measured (2026-12-01): 1.0 for the (fp32) teacher as built, 0.0012 for a bf16 one; the same at EAT-Base width
    # (2 layers): 0.9999996 and 0.0012.
    assert fractions["as built"] > 0.99, fractions
    assert fractions[torch.bfloat16] < 0.1, fractions
