"""The pre-training step never makes the host wait for the accelerator (modeling_eat/modeling_eat.py): the visible
patch count comes from the mask generator's config instead of being read back from the mask, and the EMA decay is
computed on the device from the teacher's update count. Both must leave the results exactly as they were.

Tiny preset on 128-frame clips (an 8 x 8 patch grid), so the whole file runs in a few seconds.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from modeling_eat import EATConfig, EATForPreTraining
from modeling_eat.masking_eat import EATMaskGenerator, drop_masked_tokens

from eat_testing import NUM_FRAMES, NUM_PATCHES, NUM_TIME_PATCHES, build, seeded, spectrogram


aten = torch.ops.aten
# `.item()`, `int()`, `float()`, `bool()` and `if tensor` all end in `_local_scalar_dense`; `nonzero` (boolean
# indexing) and `equal` hand a data-dependent result to the host.
HOST_READS = {aten._local_scalar_dense.default, aten.nonzero.default, aten.equal.default, aten.is_nonzero.default}




def padding_mask() -> torch.Tensor:
    attention_mask = torch.ones(2, NUM_FRAMES, dtype=torch.long)
    attention_mask[1, 90:] = 0
    return attention_mask


class HostTrafficRecorder(TorchDispatchMode):
    """Records the ops that would make the host wait for an accelerator: reads of tensor values back to the host,
    and ops fed from host (CPU) tensors, i.e. blocking host→device copies. On the meta device a read fails anyway,
    but a copy from the host would pass unnoticed; the record also names the op that synchronised."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        host_inputs = [
            tuple(leaf.shape)
            for leaf in tree_leaves((args, kwargs))
            if isinstance(leaf, torch.Tensor) and leaf.device.type == "cpu"
        ]
        if func in HOST_READS or host_inputs:
            self.calls.append(f"{func} (host inputs {host_inputs})")
        return func(*args, **kwargs)


# ------------------------------------------------------------------------------------------------------------------
# Same results as reading the count from the mask
# ------------------------------------------------------------------------------------------------------------------


def test_drop_masked_tokens_with_the_count_equals_reading_it_from_the_mask():
    model = build()
    masks = model.mask_generator(2, NUM_TIME_PATCHES, 8, seeded(1))
    tokens = torch.randn(4, NUM_PATCHES, 64, generator=seeded(2))
    num_visible = model.mask_generator.num_visible(NUM_TIME_PATCHES, 8)
    assert num_visible == 12
    expected = drop_masked_tokens(tokens, masks)
    assert torch.equal(drop_masked_tokens(tokens, masks, num_visible), expected)
    assert torch.equal(drop_masked_tokens(tokens[..., 0], masks, num_visible), expected[..., 0])
    # The visible tokens, in grid order, and nothing else.
    assert torch.equal(expected, tokens[~masks].view(4, num_visible, 64))


@pytest.mark.parametrize("objective", ["eat", "maskspec"])
@pytest.mark.parametrize("with_padding", [False, True])
def test_pretraining_outputs_equal_those_of_the_mask_read_path(objective, with_padding, monkeypatch):
    model = build(pretraining_objective=objective).train()
    input_values = spectrogram()
    attention_mask = padding_mask() if with_padding else None
    masks = model.mask_generator(2, NUM_TIME_PATCHES, 8, seeded(3))

    def step():
        out = model(input_values, attention_mask=attention_mask, bool_masked_pos=masks, generator=seeded(4))
        out.loss.backward()
        gradients = [parameter.grad.clone() for parameter in model.eat.parameters()]
        model.zero_grad()
        return out, gradients

    counted, counted_gradients = step()
    # No count handed down to the encoder: EATModel reads it from the mask, as every step did before.
    encoder_forward = model.eat.forward
    monkeypatch.setattr(model.eat, "forward", lambda *args, num_visible_patches=None, **kwargs: encoder_forward(
        *args, **kwargs))
    read, read_gradients = step()

    for name in ("loss", "frame_loss", "utterance_loss", "logits", "last_hidden_state", "target_std"):
        counted_value, read_value = getattr(counted, name), getattr(read, name)
        assert (counted_value is None and read_value is None) or torch.equal(counted_value, read_value), name
    assert all(torch.equal(first, second) for first, second in zip(counted_gradients, read_gradients))


# ------------------------------------------------------------------------------------------------------------------
# EMA decay on the device
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ema_decay, ema_end_decay, ema_anneal_end_step",
    [(0.9, 0.9, 1), (0.99, 0.99, 1), (0.999, 0.999, 1), (0.9, 0.9999, 4)],  # constant at each decay, then annealed
)
def test_ema_update_equals_the_scalar_weight_update(ema_decay, ema_end_decay, ema_anneal_end_step):
    model = build(ema_decay=ema_decay, ema_end_decay=ema_end_decay, ema_anneal_end_step=ema_anneal_end_step)
    teacher = model.teacher
    generator = seeded(5)
    decays = []
    for step in range(6):
        with torch.no_grad():  # the student moves, as after an optimizer step
            for parameter in model.eat.parameters():
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
        # The reference update: the decay read on the host, a Python-float lerp weight.
        expected = [parameter.clone() for parameter in teacher.encoder.parameters()]
        expected_decay = float(teacher.ema_decay(step))
        torch._foreach_lerp_(expected, [p.detach() for p in model.eat.parameters()], 1.0 - expected_decay)

        decay = model.update_teacher()

        assert isinstance(decay, torch.Tensor) and decay.dim() == 0 and decay.device == teacher.num_updates.device
        assert float(decay) == expected_decay
        assert int(teacher.num_updates) == step + 1
        for parameter, reference in zip(teacher.encoder.parameters(), expected):
            torch.testing.assert_close(parameter, reference, rtol=1e-7, atol=0)
        decays.append(float(decay))
    if ema_anneal_end_step == 4:
        assert decays == pytest.approx([0.9, 0.924975, 0.94995, 0.974925, 0.9999, 0.9999], abs=1e-12)
    assert float(teacher.ema_decay()) == float(teacher.ema_decay(6)) == ema_end_decay


# ------------------------------------------------------------------------------------------------------------------
# Masks drawn with another configuration
# ------------------------------------------------------------------------------------------------------------------


def test_mask_with_another_ratio_is_refused_with_a_clear_error():
    model = build()  # mask_ratio 0.8: 12 of 64 patches visible
    other = EATMaskGenerator(EATConfig.from_preset("tiny", clone_batch=2, mask_ratio=0.75))
    masks = other(2, NUM_TIME_PATCHES, 8, seeded(6))
    assert other.num_visible(NUM_TIME_PATCHES, 8) == 16
    expected = r"leaves \[16\] patches visible per row, but exactly 12 are expected"
    with pytest.raises(ValueError, match=expected) as info:
        model(spectrogram(), bool_masked_pos=masks)
    assert "another mask_ratio or config" in str(info.value) and "mask_generator" in str(info.value)

    # Rows that disagree among themselves are refused too, even when the first one has the expected count.
    mixed = model.mask_generator(2, NUM_TIME_PATCHES, 8, seeded(7))
    mixed[3] = masks[3]
    with pytest.raises(ValueError, match=r"leaves \[12, 16\] patches visible per row"):
        model(spectrogram(), bool_masked_pos=mixed)

    # EATModel on its own with a user mask and no count still reads the count from the mask.
    assert model.eat(spectrogram(), bool_masked_pos=masks).last_hidden_state.shape == (4, 1 + 16, 64)


# ------------------------------------------------------------------------------------------------------------------
# No host synchronisation
# ------------------------------------------------------------------------------------------------------------------


def meta_batch(model: EATForPreTraining) -> tuple[torch.Tensor, torch.Tensor]:
    rows = 2 * model.config.clone_batch
    return (
        torch.empty(2, NUM_FRAMES, 128, device="meta"),
        torch.empty(rows, NUM_PATCHES, dtype=torch.bool, device="meta"),
    )


@pytest.mark.parametrize("objective", ["eat", "maskspec"])
def test_pretraining_step_reads_nothing_back_from_the_device(objective):
    # Meta tensors have shapes but no values: any read of a value on the host raises, so a step that completes on
    # them has no data-dependent host read (the only kind of synchronisation that could hide in the model).
    model = build(pretraining_objective=objective, hidden_dropout_prob=0.1, drop_path_rate=0.1).to("meta").train()
    input_values, masks = meta_batch(model)
    recorder = HostTrafficRecorder()
    with recorder:
        out = model(input_values, bool_masked_pos=masks)
        out.loss.backward()
        decay = model.update_teacher()
    assert recorder.calls == []
    assert out.loss.device.type == "meta" and model.eat.embeddings.cls_token.grad is not None
    assert (decay is None) == (objective == "maskspec")


def test_the_sync_check_catches_host_reads():
    # The harness must fail on what the step used to do: read the visible count from the mask, the decay from the
    # update count.
    model = build().to("meta").train()
    input_values, masks = meta_batch(model)
    read_backs = (lambda: model.eat(input_values, bool_masked_pos=masks), lambda: float(model.teacher.ema_decay()))
    for read_back in read_backs:
        recorder = HostTrafficRecorder()
        with pytest.raises(RuntimeError, match="meta"), recorder:
            read_back()
        assert any("_local_scalar_dense" in call for call in recorder.calls), recorder.calls


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: torch.cuda.set_sync_debug_mode")
def test_cuda_pretraining_step_does_not_synchronise():
    device = torch.device("cuda")
    model = build().to(device).train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    input_values = spectrogram().to(device)
    masks = model.mask_generator(2, NUM_TIME_PATCHES, 8, seeded(8)).to(device)
    generator = torch.Generator(device=device)

    def step():
        generator.manual_seed(0)
        model(input_values, bool_masked_pos=masks, generator=generator).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return model.update_teacher()

    step()  # warm-up: lazy CUDA/cuBLAS initialisation and the optimizer's state are not the steady-state step
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        decay = step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert float(decay) == float(model.teacher.ema_decay(1))


@pytest.mark.parametrize("objective", ["eat", "maskspec"])
def test_pretraining_forward_traces_as_one_graph(objective):
    # A device read splits a torch.compile graph: with none left, the whole pre-training forward is one graph.
    model = build(pretraining_objective=objective).train()
    inputs = spectrogram()
    masks = model.mask_generator(2, inputs.shape[1] // 16, model.config.num_freq_patches, seeded(1))
    model(inputs, bool_masked_pos=masks)  # transformers installs its output-capturing hooks on the first call
    explanation = torch._dynamo.explain(model)(inputs, bool_masked_pos=masks)
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0), explanation.break_reasons
