"""Unit tests of the fine-tuning workflow (modeling_eat/finetuning/): recipes, augmentations, labels, the Trainer and
its losses, metrics, sampling."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, Features, List, Value
from sklearn.metrics import average_precision_score
from transformers import EvalPrediction, TrainingArguments

from modeling_eat import EATFeatureExtractor, EATForAudioClassification
from modeling_eat.finetuning.augmentations import mixup, roll_and_gain, spec_augment
from modeling_eat.finetuning.data import (
    IGNORED_LABEL,
    SKIPPED_AUDIO,
    AudioClassificationTransform,
    ClassificationCollator,
    WeightedEpochSampler,
    clip_weights_from_labels,
)
from modeling_eat.finetuning.labels import build_label_spec
from modeling_eat.finetuning.metrics import ClassificationMetrics, mean_average_precision, write_evaluation_reports
from modeling_eat.finetuning.recipes import RECIPES, FinetuningArguments, FinetuningRecipe, resolve_recipe
from modeling_eat.finetuning.trainer import EATFinetuningTrainer, classification_loss, loss_kind

from eat_testing import build, tone, write_wav


# ---------------------------------------------------------------------------------------------------- augmentations


def test_mixup_mixes_inputs_and_labels_with_one_lambda():
    rng = np.random.default_rng(0)
    inputs = torch.randn(6, 32, 16, dtype=torch.float64)
    targets = F.one_hot(torch.tensor([0, 1, 2, 3, 0, 2]), 4).double()
    mixed_inputs, mixed_targets, lam = mixup(inputs, targets, alpha=0.8, prob=1.0, rng=rng)

    partner = inputs.flip(0)
    recovered = (mixed_inputs - partner) / (inputs - partner)  # every element must give the same lambda
    assert torch.allclose(recovered, recovered.flatten()[0], atol=1e-8)
    lam_from_inputs = float(recovered.flatten()[0])
    assert lam_from_inputs == pytest.approx(lam, abs=1e-10)
    assert 0.0 < lam < 1.0 and lam != 0.5
    assert torch.allclose(mixed_targets, lam_from_inputs * targets + (1 - lam_from_inputs) * targets.flip(0))
    assert torch.allclose(mixed_targets.sum(-1), torch.ones(6, dtype=torch.float64))


def test_mixup_probability_and_alpha_zero_leave_the_batch_alone():
    inputs, targets = torch.randn(4, 16, 8), torch.eye(4)
    rng = np.random.default_rng(0)
    for alpha, prob in ((0.0, 1.0), (0.8, 0.0)):
        out_inputs, out_targets, lam = mixup(inputs, targets, alpha, prob, rng)
        assert lam == 1.0 and out_inputs is inputs and out_targets is targets
    # prob 0.9: about one batch in ten is left alone.
    lams = [mixup(inputs, targets, 0.8, 0.9, rng)[2] for _ in range(2000)]
    assert 0.07 < np.mean(np.array(lams) == 1.0) < 0.13


def _band(mask_1d: np.ndarray) -> tuple[int, int]:
    """(start, width) of the True entries, asserting they are one contiguous run."""
    where = np.flatnonzero(mask_1d)
    if where.size == 0:
        return 0, 0
    assert where[-1] - where[0] + 1 == where.size, f"mask is not contiguous: {where}"
    return where[0], where.size


@pytest.mark.parametrize("ratio", [0.2, 0.4])
def test_spec_augment_masks_one_band_per_axis_within_the_ratio(ratio):
    batch, frames, mel = 200, 112, 128
    inputs = torch.rand(batch, frames, mel) + 1.0  # nowhere 0 before masking
    out = spec_augment(inputs, ratio, np.random.default_rng(0)).numpy()
    masked = out == 0
    assert np.array_equal(out[~masked], inputs.numpy()[~masked])
    freq_widths, time_widths, freq_starts = [], [], []
    for clip in masked:
        freq_start, freq_width = _band(clip.all(axis=0))
        time_start, time_width = _band(clip.all(axis=1))
        expected = np.zeros_like(clip)
        expected[:, freq_start : freq_start + freq_width] = True
        expected[time_start : time_start + time_width, :] = True
        assert np.array_equal(clip, expected), "masked cells must be exactly one frequency band and one time band"
        freq_widths.append(freq_width), time_widths.append(time_width), freq_starts.append(freq_start)
    assert max(freq_widths) <= ratio * mel and max(time_widths) <= ratio * frames
    # Drawn per clip (iid), and the widths use most of their allowed range.
    assert len(set(freq_widths)) > 10 and len(set(freq_starts)) > 10
    assert max(freq_widths) >= 0.8 * ratio * mel and max(time_widths) >= 0.8 * ratio * frames
    assert spec_augment(inputs, 0.0, np.random.default_rng(0)) is inputs


def test_roll_and_gain_is_a_circular_shift_times_a_gain():
    rng = np.random.default_rng(1)
    waveform = np.random.default_rng(2).standard_normal(1000).astype(np.float32)
    gains, shifts = [], []
    for _ in range(50):
        out = roll_and_gain(waveform, rng)
        assert out.shape == waveform.shape and out.dtype == waveform.dtype
        # The shift is where the circular cross-correlation peaks; the gain is the least-squares ratio.
        correlation = np.fft.ifft(np.fft.fft(out) * np.conj(np.fft.fft(waveform))).real
        shift = int(np.argmax(correlation))
        rolled = np.roll(waveform, shift)
        gain = float(out @ rolled / (rolled @ rolled))
        np.testing.assert_allclose(out, gain * rolled, rtol=1e-5, atol=1e-6)
        gains.append(gain), shifts.append(shift)
    assert 0.5 <= min(gains) and max(gains) <= 1.5 and np.std(gains) > 0.02
    assert len(set(shifts)) > 40


# ---------------------------------------------------------------------------------------------------- optimizer


def _trainer(tmp_path, model, recipe, **training):
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True, seed=0, **training)
    return EATFinetuningTrainer(model=model, args=args, recipe=recipe)


def test_trainer_optimizer_and_schedule_keep_the_layer_ratios(tmp_path):
    model = build(EATForAudioClassification, num_labels=4)
    recipe = FinetuningRecipe(layer_decay=0.5)
    trainer = _trainer(tmp_path, model, recipe, learning_rate=1e-3, weight_decay=0.05, warmup_steps=2,
                       lr_scheduler_type="cosine")
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    for _ in range(4):
        trainer.optimizer.step(), trainer.lr_scheduler.step()
    top = max(group["lr"] for group in trainer.optimizer.param_groups)
    assert 0 < top < 1e-3  # past warmup, decaying
    for group in trainer.optimizer.param_groups:
        assert group["lr"] == pytest.approx(top * group["lr_scale"])
    assert sorted({round(g["lr_scale"], 6) for g in trainer.optimizer.param_groups}) == [0.125, 0.25, 0.5, 1.0]


def test_trainer_augments_only_in_training_and_picks_the_official_loss(tmp_path):
    model = build(EATForAudioClassification, num_labels=4)
    seen = []
    model.eat.embeddings.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    recipe = FinetuningRecipe(mixup_alpha=0.8, mixup_prob=1.0, specaug_ratio=0.3, label_smoothing=0.1, layer_decay=1.0)
    trainer = _trainer(tmp_path, model, recipe)
    assert trainer.loss_kind == "bce"  # single-label with mixup: SPC-2's BCE
    inputs = {"input_values": torch.randn(4, 64, 128), "labels": torch.tensor([0, 1, 2, 3])}

    model.eval()
    loss, outputs = trainer.compute_loss(model, inputs, return_outputs=True)
    assert torch.equal(seen[-1], inputs["input_values"])
    expected = classification_loss(outputs.logits, inputs["labels"], "bce")  # no smoothing in evaluation
    assert loss.item() == pytest.approx(expected.item())
    assert "labels" in inputs  # the caller's batch is left intact

    model.train()
    trainer.compute_loss(model, inputs)
    augmented = seen[-1]
    assert not torch.allclose(augmented, inputs["input_values"])
    assert (augmented == 0).any()  # SpecAugment's bands


class _ThreadReportingClips(torch.utils.data.Dataset):
    """Clips whose labels carry the worker's thread counts: torch's intra-op threads and numpy's BLAS pool."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        from threadpoolctl import threadpool_info

        blas = max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
        return {"input_values": torch.zeros(64, 128), "labels": torch.get_num_threads() * 100 + blas}


def test_trainer_dataloader_workers_run_one_thread_and_are_still_seeded(tmp_path):
    trainer = _trainer(tmp_path, build(EATForAudioClassification, num_labels=4), FinetuningRecipe(),
                       dataloader_num_workers=1, per_device_train_batch_size=2, dataloader_pin_memory=False)
    trainer.train_dataset = _ThreadReportingClips()
    loader = trainer.get_train_dataloader()
    assert next(iter(loader))["labels"].tolist() == [101, 101]
    worker_init_fn = loader.base_dataloader.worker_init_fn
    assert worker_init_fn.keywords["then"].func.__name__ == "seed_worker"  # the Trainer's seeding kept


def test_loss_kinds_follow_the_official_branches():
    assert loss_kind(RECIPES["esc50"], multi_label=False) == "ce"
    assert loss_kind(RECIPES["spc2"], multi_label=False) == "bce"
    assert loss_kind(RECIPES["as20k"], multi_label=True) == "bce"
    assert loss_kind(FinetuningRecipe(mixup_alpha=0.8, mixup_loss="soft_ce"), multi_label=False) == "soft_ce"
    logits, labels = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    one_hot = F.one_hot(labels, 4).float()
    assert classification_loss(logits, labels, "ce", 0.1) == pytest.approx(
        F.cross_entropy(logits, labels, label_smoothing=0.1).item())
    soft_ce = F.cross_entropy(logits, labels).item()
    assert classification_loss(logits, labels, "soft_ce").item() == pytest.approx(soft_ce)
    bce = F.binary_cross_entropy_with_logits(logits, one_hot, reduction="sum") / 5
    assert classification_loss(logits, labels, "bce").item() == pytest.approx(bce.item())
    assert classification_loss(logits, one_hot, "bce").item() == pytest.approx(bce.item())


# ---------------------------------------------------------------------------------------------------- recipes


def test_recipes_hold_the_official_values():
    expected = {  # EAT.md §4, per-dataset settings
        "as20k": (1024, -4.268, 4.569, 48, 5e-5, 40_000, 4_000, 0.8, 0.2, 0.0),
        "as2m": (1024, -4.268, 4.569, 96, 5e-5, 300_000, 30_000, 0.8, 0.2, 0.0),
        "esc50": (512, -6.627, 5.359, 48, 5e-5, 4_000, 400, 0.0, 0.4, 0.1),
        "spc2": (128, -6.846, 5.565, 256, 2e-4, 40_000, 4_000, 0.8, 0.2, 0.1),
        # The warm-ups are the official step counts, held as a fraction of the run (10% in every recipe).
    }
    for name, (length, mean, std, batch, lr, steps, warmup, alpha, ratio, smoothing) in expected.items():
        recipe = RECIPES[name]
        assert (recipe.target_length, recipe.norm_mean, recipe.norm_std) == (length, mean, std), name
        assert (recipe.mixup_alpha, recipe.mixup_prob, recipe.specaug_ratio) == (alpha, 0.9, ratio), name
        assert (recipe.label_smoothing, recipe.layer_decay, recipe.drop_path_rate) == (smoothing, 0.65, 0.1), name
        assert recipe.roll_augment and recipe.weighted_sampling == (name == "as2m")
        assert recipe.noise_augment == (name == "spc2")
        training = recipe.training
        assert (training["per_device_train_batch_size"], training["learning_rate"]) == (batch, lr), name
        assert training["max_steps"] == steps, name
        assert training["warmup_steps"] == 0.1 and round(0.1 * steps) == warmup, name
        assert (training["adam_beta1"], training["adam_beta2"], training["weight_decay"]) == (0.9, 0.95, 0.05)
        assert training["lr_scheduler_type"] == "cosine_with_min_lr"
        assert training["lr_scheduler_kwargs"] == {"min_lr": 1e-6}
    # SpecAugment widths of AS-20K: freqm 25.6, timem 204.8.
    assert 128 * RECIPES["as20k"].specaug_ratio == pytest.approx(25.6)
    assert RECIPES["as20k"].target_length * RECIPES["as20k"].specaug_ratio == pytest.approx(204.8)
    assert RECIPES["as2m"].samples_per_epoch == 200_000


def test_resolve_recipe_flags_win_and_unset_values_are_decided():
    resolved = resolve_recipe(FinetuningArguments(recipe="esc50", mixup_alpha=0.5, target_length=256), pretrained=True)
    assert (resolved.mixup_alpha, resolved.target_length) == (0.5, 256)
    assert (resolved.specaug_ratio, resolved.norm_mean, resolved.label_smoothing) == (0.4, -6.627, 0.1)
    assert resolved.training == RECIPES["esc50"].training

    default = resolve_recipe(FinetuningArguments(), pretrained=False, max_length_seconds=1.0)
    assert default.target_length == 112  # 98 Kaldi frames in 1 s, rounded up to a multiple of 16
    assert (default.norm_mean, default.norm_std) == (-4.268, 4.569)
    assert default.layer_decay == 1.0 and default.mixup_alpha == 0.0
    assert resolve_recipe(FinetuningArguments(), pretrained=True).layer_decay == 0.65
    assert resolve_recipe(FinetuningArguments(), pretrained=True).target_length == 1024

    class CheckpointExtractor:
        mean, std = -6.0, 5.0

    from_checkpoint = resolve_recipe(
        FinetuningArguments(), pretrained=True, base_feature_extractor=CheckpointExtractor()
    )
    assert (from_checkpoint.norm_mean, from_checkpoint.norm_std) == (-6.0, 5.0)

    with pytest.raises(ValueError, match="multiple of the patch size 16"):
        resolve_recipe(FinetuningArguments(target_length=100), pretrained=True)
    with pytest.raises(ValueError, match="--specaug_ratio"):
        resolve_recipe(FinetuningArguments(specaug_ratio=1.5), pretrained=True)
    with pytest.raises(ValueError, match="Unknown recipe 'as2k'"):
        resolve_recipe(FinetuningArguments(recipe="as2k"), pretrained=True)


# ---------------------------------------------------------------------------------------------------- labels


def test_string_and_int_label_columns_use_sorted_unique_values():
    strings = Dataset.from_dict({"label": ["dog", "cat", "owl", "cat"]})
    spec = build_label_spec(strings.features["label"], strings["label"])
    assert spec.names == ["cat", "dog", "owl"] and not spec.multi_label
    assert [spec.encode(v) for v in strings["label"]] == [1, 0, 2, 0]
    assert spec.problem_type == "single_label_classification"
    assert spec.id2label == {0: "cat", 1: "dog", 2: "owl"} and spec.label2id["owl"] == 2

    ints = Dataset.from_dict({"label": [10, 2, 7, 2]})
    spec = build_label_spec(ints.features["label"], ints["label"])
    assert spec.names == ["2", "7", "10"]  # numeric order, not string order
    assert [spec.encode(v) for v in ints["label"]] == [2, 0, 1, 0]


def test_classlabel_column_keeps_its_names_and_indices():
    features = Features({"label": ClassLabel(names=["zero", "one", "two"])})
    data = Dataset.from_dict({"label": [2, 0, 2]}, features=features)
    spec = build_label_spec(data.features["label"], data["label"])
    assert spec.names == ["zero", "one", "two"]  # all classes, even one absent from the data
    assert [spec.encode(v) for v in data["label"]] == [2, 0, 2]


def test_list_columns_are_multi_label():
    data = Dataset.from_dict({"label": [["speech", "music"], ["dog"], []]})
    spec = build_label_spec(data.features["label"], data["label"])
    assert spec.multi_label and spec.problem_type == "multi_label_classification"
    assert spec.names == ["dog", "music", "speech"]
    assert [spec.encode(v) for v in data["label"]] == [[0.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]

    features = Features({"label": List(ClassLabel(names=["a", "b", "c"]))})
    data = Dataset.from_dict({"label": [[0, 2], [1]]}, features=features)
    spec = build_label_spec(data.features["label"], data["label"])
    assert spec.multi_label and spec.names == ["a", "b", "c"]
    assert spec.encode([0, 2]) == [1.0, 0.0, 1.0]


def test_label_errors_name_the_problem():
    spec = build_label_spec(Value("string"), ["cat", "dog"])
    with pytest.raises(ValueError, match=r"labels the train split lacks: \['owl'\]"):
        spec.check_covers(["cat", "owl"], "test")
    with pytest.raises(ValueError, match="--label_column_name"):
        build_label_spec(Value("float32"), [0.5, 1.5], "score")
    with pytest.raises(ValueError, match="missing"):
        build_label_spec(Value("string"), ["cat", None])
    # A one-class data set trained without a word (its loss is 0 from the first step).
    with pytest.raises(ValueError, match=r"^The label column 'label' holds a single class \('cat'\): a classifier "
                                         "needs at least two. Label clips of two classes or more"):
        build_label_spec(Value("string"), ["cat", "cat"])


# ---------------------------------------------------------------------------------------------------- metrics


def test_mean_average_precision_matches_sklearn_and_a_hand_computation():
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.3, 0.6], [0.1, 0.9]])
    mean, per_class = mean_average_precision(targets, scores)
    # Class 0 ranks (0.9 +, 0.8 -, 0.3 +): AP = (1/1 + 2/3) / 2. Class 1 ranks (0.9 -, 0.7 +, 0.6 +): (1/2 + 2/3) / 2.
    np.testing.assert_allclose(per_class, [(1 + 2 / 3) / 2, (1 / 2 + 2 / 3) / 2])
    assert mean == pytest.approx(average_precision_score(targets, scores, average="macro"))

    # A class without positives is left out of the mean instead of counting as 0.
    with_empty = np.concatenate([targets, np.zeros((4, 1), dtype=int)], axis=1)
    mean_empty, per_class_empty = mean_average_precision(with_empty, np.concatenate([scores, scores[:, :1]], axis=1))
    assert np.isnan(per_class_empty[2]) and mean_empty == pytest.approx(mean)


def test_metrics_and_reports_for_multi_and_single_label(tmp_path):
    spec = build_label_spec(List(Value("string")), [["bird", "car"], ["car"]])
    metrics = ClassificationMetrics(spec)
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    logits = np.array([[2.0, -1.0], [1.5, 0.5], [-0.5, 0.2], [-2.0, 1.0]], dtype=np.float32)
    result = metrics(EvalPrediction(predictions=logits, label_ids=targets))
    assert result["map"] == pytest.approx(average_precision_score(targets, logits, average="macro"))
    written = write_evaluation_reports(metrics, tmp_path)
    rows = (tmp_path / "per_class_ap.tsv").read_text().splitlines()
    assert rows[0] == "index\tlabel\taverage_precision"
    assert rows[1].startswith("0\tbird\t") and float(rows[1].split("\t")[2]) == pytest.approx((1 + 2 / 3) / 2, 1e-5)
    assert tmp_path / "per_class_ap.tsv" in written

    spec = build_label_spec(Value("string"), ["cat", "dog", "owl"])
    metrics = ClassificationMetrics(spec)
    logits = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]
    assert metrics(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 2, 0])))["accuracy"] == 0.75


def test_trainer_progress_bars_redraw_rarely_into_a_file(tmp_path, monkeypatch):
    from transformers.trainer_callback import ProgressCallback

    from modeling_eat.finetuning.trainer import QuietProgressCallback
    from modeling_eat.runtime import progress_interval

    trainer = _trainer(tmp_path, build(EATForAudioClassification, num_labels=2), FinetuningRecipe())
    kinds = [type(callback) for callback in trainer.callback_handler.callbacks]
    assert QuietProgressCallback in kinds and ProgressCallback not in kinds
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    assert progress_interval() == 30.0


def test_clips_that_could_not_be_decoded_leave_the_loss_and_the_metrics(tmp_path):
    # The transform keeps the row's place with silence, the ignored label and the file's name.
    good = tmp_path / "good.wav"
    write_wav(good, tone(440.0, 16000, 0.5), 16000)
    spec = build_label_spec(Value("string"), ["cat", "dog"])
    transform = AudioClassificationTransform(EATFeatureExtractor(max_length=112), spec)
    batch = transform({
        "audio": [{"bytes": None, "path": str(good)}, {"bytes": b"not audio", "path": "broken.wav"}],
        "label": ["dog", "cat"],
    })
    assert batch["labels"] == [1, IGNORED_LABEL] and batch[SKIPPED_AUDIO] == ["", "broken.wav"]
    assert batch["input_values"][0].shape == batch["input_values"][1].shape == (112, 128)
    collated = ClassificationCollator()([{name: values[i] for name, values in batch.items()} for i in range(2)])
    assert collated["labels"].tolist() == [1, IGNORED_LABEL] and collated[SKIPPED_AUDIO] == ["broken.wav"]

    # Training leaves the row out of the batch; evaluation keeps its logits (aligned with the labels) out of the loss.
    model = build(EATForAudioClassification, num_labels=2)
    trainer = _trainer(tmp_path, model, FinetuningRecipe(specaug_ratio=0.0, roll_augment=False, layer_decay=1.0))
    seen = []
    model.eat.embeddings.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    inputs = {"input_values": torch.randn(3, 64, 128), "labels": torch.tensor([0, IGNORED_LABEL, 1]),
              SKIPPED_AUDIO: ["broken.wav"]}
    model.train()
    trainer.compute_loss(model, inputs)
    assert seen[-1] == 2 and trainer.skipped_audio == ["broken.wav"]
    model.eval()
    loss, outputs = trainer.compute_loss(model, inputs, return_outputs=True)
    assert seen[-1] == 3 and outputs.logits.shape[0] == 3
    expected = classification_loss(outputs.logits[[0, 2]], torch.tensor([0, 1]), "ce")
    assert loss.item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="no clip of a training batch could be decoded"):
        model.train()
        trainer.compute_loss(model, {"input_values": torch.randn(1, 64, 128), "labels": torch.tensor([IGNORED_LABEL])})

    # The metrics score the decodable clips only: counted as wrong, the broken one would make 1/3, not 1/2.
    metrics = ClassificationMetrics(spec)
    logits = np.array([[2.0, 0.0], [2.0, 0.0], [2.0, 0.0]], dtype=np.float32)
    labels = np.array([0, 1, IGNORED_LABEL])
    assert metrics(EvalPrediction(predictions=logits, label_ids=labels)) == {"accuracy": 0.5}
    multi = ClassificationMetrics(build_label_spec(List(Value("string")), [["bird", "car"], ["car"]]))
    targets = np.array([[1, 0], [0, 1], [IGNORED_LABEL, IGNORED_LABEL]], dtype=np.float32)
    scores = np.array([[2.0, -1.0], [-1.0, 2.0], [-5.0, 5.0]], dtype=np.float32)
    assert multi(EvalPrediction(predictions=scores, label_ids=targets))["map"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------- sampling


def test_weighted_sampling_draws_without_replacement_and_favours_rare_classes():
    labels = [[0]] * 90 + [[1]] * 10  # clips 90..99 are the rare class
    weights = clip_weights_from_labels(labels, num_labels=2)
    assert weights.sum() == pytest.approx(1.0)
    assert weights[95] == pytest.approx(9 * weights[0])  # each class weighs the same in total

    sampler = WeightedEpochSampler(weights, num_samples=20, seed=0)
    epochs = [list(sampler) for _ in range(50)]
    assert all(len(epoch) == 20 == len(set(epoch)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) == 50  # a new draw every epoch
    rare_share = np.mean([np.mean(np.array(epoch) >= 90) for epoch in epochs])
    assert rare_share > 0.3  # uniform sampling would give 0.1

    sampler.set_epoch(3)
    assert list(sampler) == epochs[3]  # the draw depends only on seed and epoch

    multi = clip_weights_from_labels([[0, 1], [0], [0]], num_labels=2)
    np.testing.assert_allclose(multi * (1 / 3 + 1 + 1 / 3 + 1 / 3) , [1 / 3 + 1, 1 / 3, 1 / 3])
