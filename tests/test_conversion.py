"""Checkpoint conversion against the reference fixtures (../shared/fixtures/eat_reference, see its README)."""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForAudioClassification

from modeling_eat import EATConfig, EATForAudioClassification, EATForPreTraining, EATModel
from modeling_eat.conversion import (
    ConversionError,
    UnsafeCheckpointError,
    audioset_id2label,
    build_converted_model,
    convert_checkpoint,
    load_source_checkpoint,
    plan_conversion,
)
from modeling_eat.conversion import cli as conversion_cli
from modeling_eat.conversion import reference as reference_forward
from modeling_eat.conversion.layouts import FAIRSEQ_PRETRAINING, SourceCheckpoint
from modeling_eat.conversion.settings import config_for
from modeling_eat.hub import CODE_FILES

from eat_testing import FIXTURE_TOLERANCE, max_error, refusal, save_tiny_classifier


POSITIONS = "modality_encoders.IMAGE.fixed_positional_encoder.positions"




@pytest.fixture(scope="module")
def eat_reference(fixtures_dir) -> Path:
    return fixtures_dir / "eat_reference"


@pytest.fixture(scope="module")
def reference(eat_reference) -> dict[str, torch.Tensor]:
    return load_file(eat_reference / "reference_outputs.safetensors")


@pytest.fixture(scope="module")
def pretraining_checkpoint(eat_reference) -> dict:
    return torch.load(eat_reference / "fairseq_pretrain_tiny.pt", weights_only=True)


@pytest.fixture(scope="module")
def convert(eat_reference, tmp_path_factory):
    """Converts each (checkpoint, options) once per module; returns (folder, report)."""
    done = {}

    def converted(checkpoint: str, **options):
        key = (checkpoint, tuple(sorted(options.items())))
        if key not in done:
            folder = tmp_path_factory.mktemp("converted")
            done[key] = folder, convert_checkpoint(eat_reference / checkpoint, folder, **options)
        return done[key]

    return converted


def save_variant(checkpoint: dict, path: Path, edit) -> Path:
    """Writes a copy of a fixture checkpoint with `edit(state_dict)` applied."""
    variant = {**checkpoint, "model": dict(checkpoint["model"])}
    edit(variant["model"])
    torch.save(variant, path)
    return path


STUDENT = {
    "last_hidden_state": "student_last_hidden_state",
    "last_hidden_state_short": "student_last_hidden_state_short",
}


# Measured (float32, CPU): student 1.2e-6 (short input 9.5e-7), teacher 1.2e-6, logits 6.0e-8 for both fine-tuned
# layouts; the fixtures were made with the official math, so these are float32 rounding only.
@pytest.mark.parametrize(
    "checkpoint, options, model_class, expected",
    [
        ("fairseq_pretrain_tiny.pt", {}, EATModel, STUDENT),
        ("fairseq_pretrain_tiny.pt", {"use_ema": True}, EATModel, {"last_hidden_state": "teacher_last_hidden_state"}),
        ("fairseq_finetune_tiny.pt", {}, EATForAudioClassification, {**STUDENT, "logits": "student_logits"}),
        ("hub_port_finetune_tiny", {}, EATForAudioClassification, {**STUDENT, "logits": "student_logits"}),
    ],
)
def test_converted_checkpoint_reproduces_reference(convert, reference, checkpoint, options, model_class, expected):
    folder, report = convert(checkpoint, **options)
    assert all(value <= FIXTURE_TOLERANCE for value in report.max_abs_differences.values()), report

    model = model_class.from_pretrained(folder).eval()
    encoder = model.eat if model_class is EATForAudioClassification else model
    with torch.no_grad():
        outputs = {
            "last_hidden_state": encoder(reference["input"]).last_hidden_state,
            "last_hidden_state_short": encoder(reference["input_short"]).last_hidden_state,
        }
        if model_class is EATForAudioClassification:
            outputs["logits"] = model(reference["input"]).logits
    for output, reference_name in expected.items():
        error = max_error(outputs[output], reference[reference_name])
        assert error < FIXTURE_TOLERANCE, f"{output} vs {reference_name}: {error}"

    assert all((folder / name).is_file() for name in CODE_FILES + ("README.md",))
    preprocessor = json.loads((folder / "preprocessor_config.json").read_text())
    assert (preprocessor["max_length"], preprocessor["mean"], preprocessor["std"]) == (256, -4.268, 4.569)
    if model_class is EATForAudioClassification:
        assert model.config.id2label == {index: f"LABEL_{index}" for index in range(10)}


def test_hub_port_reports_fc_norm_eps_difference(convert):
    _, report = convert("hub_port_finetune_tiny")
    # Measured 1.4e-6 on the tiny random-weight model: the port's eps 1e-5, which the conversion keeps, vs the official
    # 1e-6.
    note = next(note for note in report.notes if "eps" in note)
    assert "1e-05" in note and "1e-06" in note


def test_pretraining_target_reproduces_decoder_and_teacher(convert, reference):
    folder, report = convert("fairseq_pretrain_tiny.pt", target="pretraining")
    assert "teacher.num_updates = 0 (the checkpoint records no update count)" in report.notes

    model = EATForPreTraining.from_pretrained(folder).eval()
    with torch.no_grad():
        decoder_output = model.decoder(reference["decoder_input"], num_time_patches=16)
        frame_targets, utterance_targets = model.teacher(reference["input"].squeeze(1))
        student = model.eat(reference["input"]).last_hidden_state
    # Measured: decoder 7.2e-7, frame targets 2.1e-6, utterance targets 5.3e-7, student 1.2e-6.
    assert max_error(decoder_output, reference["decoder_output"]) < FIXTURE_TOLERANCE
    assert max_error(frame_targets, reference["teacher_targets"]) < FIXTURE_TOLERANCE
    assert max_error(utterance_targets, reference["teacher_utterance_targets"]) < FIXTURE_TOLERANCE
    assert max_error(student, reference["student_last_hidden_state"]) < FIXTURE_TOLERANCE
    assert int(model.teacher.num_updates) == 0


def test_pretraining_target_takes_the_update_count(eat_reference, pretraining_checkpoint, tmp_path):
    checkpoint = {**pretraining_checkpoint, "optimizer_history": [{"num_updates": 1234}]}
    torch.save(checkpoint, tmp_path / "with_updates.pt")
    source = load_source_checkpoint(tmp_path / "with_updates.pt")
    assert source.num_updates == 1234 and "optimizer_history" in source.num_updates_origin
    _, converted, _ = plan_conversion(source, "pretraining")
    assert converted["teacher.num_updates"].item() == 1234


def manifest_source(path: Path) -> SourceCheckpoint:
    """The key manifest as meta tensors, with the `_ema` teacher (student keys minus the decoder) the README names."""
    shapes = json.loads(path.read_text())
    state_dict = {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}
    teacher_shapes = {key: shape for key, shape in shapes.items() if ".decoder." not in key}
    state_dict |= {f"_ema.{key}": torch.empty(shape, device="meta") for key, shape in teacher_shapes.items()}
    return SourceCheckpoint(path, FAIRSEQ_PRETRAINING, state_dict)


@pytest.mark.parametrize(
    "size, dims",
    [
        ("base", {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
                  "decoder_num_layers": 6, "decoder_kernel_size": 3, "decoder_groups": 16}),
        ("large", {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
                   "decoder_num_layers": 3, "decoder_kernel_size": 5, "decoder_groups": 16}),
    ],
)
def test_official_key_manifests_map_completely(eat_reference, size, dims):
    source = manifest_source(eat_reference / f"fairseq_pretrain_{size}_shapes.json")
    num_source_keys = len(source.state_dict)
    for target, use_ema in (("pretraining", False), ("encoder", False), ("encoder", True)):
        config, converted, left_out = plan_conversion(source, target, use_ema)
        assert {name: getattr(config, name) for name in dims} == dims
        with torch.device("meta"):
            model_shapes = {key: value.shape for key, value in
                            (EATForPreTraining if target == "pretraining" else EATModel)(config).state_dict().items()}
        assert {key: value.shape for key, value in converted.items()} == model_shapes
        # Every source key is either converted, a positional table (checked, then recomputed) or left out on purpose.
        num_positions = 2
        converted_from_source = len(converted) - (target == "pretraining")  # teacher.num_updates is not a source key
        assert converted_from_source + sum(left_out.values()) + num_positions == num_source_keys


@pytest.mark.parametrize(
    "edit, offending",
    [
        (lambda sd: sd.update({"blocks.0.attn.extra.weight": torch.zeros(3)}), ["blocks.0.attn.extra.weight"]),
        (lambda sd: sd.pop("blocks.1.mlp.fc2.bias"), ["layers.1.mlp.fc2.bias"]),
        (lambda sd: sd.update({"blocks.2.norm1.weight": torch.ones(63)}), ["layers.2.attention_norm.weight", "(63,)"]),
    ],
    ids=["extra key", "missing key", "wrong shape"],
)
def test_refuses_key_problems_and_writes_nothing(pretraining_checkpoint, tmp_path, edit, offending):
    checkpoint = save_variant(pretraining_checkpoint, tmp_path / "bad.pt", edit)
    with pytest.raises(ConversionError) as error:
        convert_checkpoint(checkpoint, tmp_path / "out")
    assert all(text in str(error.value) for text in offending), str(error.value)
    assert not (tmp_path / "out").exists()


def test_lists_every_key_problem_at_once(pretraining_checkpoint, tmp_path):
    def break_three_ways(state_dict):
        state_dict["blocks.0.attn.extra.weight"] = torch.zeros(3)
        del state_dict["blocks.1.mlp.fc2.bias"]
        state_dict["blocks.2.norm1.weight"] = torch.ones(63)

    checkpoint = save_variant(pretraining_checkpoint, tmp_path / "bad.pt", break_three_ways)
    with pytest.raises(ConversionError, match="3 problem") as error:
        build_converted_model(load_source_checkpoint(checkpoint))
    message = str(error.value)
    assert "blocks.0.attn.extra.weight" in message
    assert "missing key (the checkpoint does not provide it): layers.1.mlp.fc2.bias" in message
    assert "shape mismatch for layers.2.attention_norm.weight: checkpoint (63,), model (64,)" in message


def test_refuses_corrupted_positional_table(pretraining_checkpoint, tmp_path):
    def corrupt(state_dict):
        positions = state_dict[POSITIONS].clone()
        positions[0, 100] += 0.01
        state_dict[POSITIONS] = positions

    checkpoint = save_variant(pretraining_checkpoint, tmp_path / "bad_positions.pt", corrupt)
    with pytest.raises(ConversionError) as error:
        convert_checkpoint(checkpoint, tmp_path / "out")
    assert POSITIONS in str(error.value) and "1 of 6144 rows (first rows [100])" in str(error.value)
    assert not (tmp_path / "out").exists()


def test_accepts_a_512_row_positional_table(pretraining_checkpoint, reference, tmp_path):
    def shorten(state_dict):  # checkpoints made before the official code grew the table (EAT.md §2.3)
        state_dict[POSITIONS] = state_dict[POSITIONS][:, :512].clone()

    checkpoint = save_variant(pretraining_checkpoint, tmp_path / "old.pt", shorten)
    model, report = build_converted_model(load_source_checkpoint(checkpoint))
    assert f"positional table {POSITIONS} (512 rows)" in report.max_abs_differences
    with torch.no_grad():
        hidden = model(reference["input"]).last_hidden_state
    assert max_error(hidden, reference["student_last_hidden_state"]) < FIXTURE_TOLERANCE


def test_pickle_needs_trust(pretraining_checkpoint, reference, tmp_path):
    cfg = {**pretraining_checkpoint["cfg"], "common": argparse.Namespace(seed=1)}
    checkpoint = {**pretraining_checkpoint, "cfg": cfg}
    torch.save(checkpoint, tmp_path / "pickled.pt")
    with pytest.raises(UnsafeCheckpointError, match="--trust_pickle") as error:
        convert_checkpoint(tmp_path / "pickled.pt", tmp_path / "out")
    assert "runs whatever code" in str(error.value) and "it names argparse.Namespace" in str(error.value)
    assert not (tmp_path / "out").exists()

    source = load_source_checkpoint(tmp_path / "pickled.pt", trust_pickle=True)
    assert source.fairseq_cfg["common"] == {"seed": 1}  # the Namespace, made plain
    model, _ = build_converted_model(source)
    with torch.no_grad():
        hidden = model(reference["input"]).last_hidden_state
    assert max_error(hidden, reference["student_last_hidden_state"]) < FIXTURE_TOLERANCE


def test_audioset_head_gets_audioset_labels(eat_reference, tmp_path):
    checkpoint = torch.load(eat_reference / "fairseq_finetune_tiny.pt", weights_only=True)

    def widen_head(state_dict):
        generator = torch.Generator().manual_seed(0)
        state_dict["head.weight"] = torch.randn(527, 64, generator=generator) * 0.02
        state_dict["head.bias"] = torch.zeros(527)

    source = load_source_checkpoint(save_variant(checkpoint, tmp_path / "as.pt", widen_head))
    config = config_for(source, "classification")
    assert config.num_labels == 527
    assert config.id2label[0] == "Speech" and config.id2label[526] == "Field recording"
    assert config.problem_type == "multi_label_classification"
    assert audioset_id2label() == config.id2label


def test_id2label_file_and_count_check(eat_reference, tmp_path):
    source = load_source_checkpoint(eat_reference / "fairseq_finetune_tiny.pt")
    names = [f"digit {index}" for index in range(10)]
    (tmp_path / "as_list.json").write_text(json.dumps(names))
    (tmp_path / "as_map.json").write_text(json.dumps({str(index): name for index, name in enumerate(names)}))
    for path in ("as_list.json", "as_map.json"):
        config = config_for(source, "classification", id2label=tmp_path / path)
        assert config.id2label == dict(enumerate(names))
        assert config.label2id["digit 3"] == 3
    with pytest.raises(ConversionError, match="names 9 classes .* the head has 10 outputs"):
        config_for(source, "classification", id2label=names[:9])
    # Names given on the command line instead of a file were FileNotFoundError's traceback.
    (tmp_path / "broken.json").write_text("{0: 'zero'")
    for given in ("zero,one", tmp_path / "broken.json"):
        with pytest.raises(ConversionError, match=rf"^--id2label {given} cannot be read as a JSON file \((FileNot"
                                                  r"FoundError|JSONDecodeError): .*\): pass a JSON file holding"):
            config_for(source, "classification", id2label=given)


def test_refuses_requests_the_checkpoint_cannot_serve(eat_reference):
    finetuned = load_source_checkpoint(eat_reference / "fairseq_finetune_tiny.pt")
    with pytest.raises(ConversionError, match="holds no EMA teacher"):
        build_converted_model(finetuned, target="encoder", use_ema=True)
    with pytest.raises(ConversionError, match="only fairseq pre-training checkpoints have them"):
        build_converted_model(finetuned, target="pretraining")
    pretraining = load_source_checkpoint(eat_reference / "fairseq_pretrain_tiny.pt")
    with pytest.raises(ConversionError, match="needs a classification head"):
        build_converted_model(pretraining, target="classification")


def test_cli_end_to_end(eat_reference, reference, tmp_path):
    names = [f"class {index}" for index in range(10)]
    (tmp_path / "labels.json").write_text(json.dumps(names))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "modeling_eat.convert",
         "--checkpoint_path", str(eat_reference / "fairseq_finetune_tiny.pt"), "--output_dir", str(tmp_path / "cli"),
         "--id2label", str(tmp_path / "labels.json")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "logits: max |difference|" in completed.stdout

    encoder = AutoModel.from_pretrained(tmp_path / "cli")
    assert isinstance(encoder, EATModel)
    classifier = AutoModelForAudioClassification.from_pretrained(tmp_path / "cli")
    assert classifier.config.id2label[9] == "class 9"
    with torch.no_grad():
        hidden = encoder(reference["input"]).last_hidden_state
        logits = classifier(reference["input"]).logits
    assert max_error(hidden, reference["student_last_hidden_state"]) < FIXTURE_TOLERANCE
    assert max_error(logits, reference["student_logits"]) < FIXTURE_TOLERANCE


def test_cli_refuses_untrusted_pickle_with_exit_code(pretraining_checkpoint, tmp_path, capsys, converter_cli):
    cli = converter_cli
    checkpoint = {**pretraining_checkpoint, "cfg": argparse.Namespace(model={})}
    torch.save(checkpoint, tmp_path / "pickled.pt")

    arguments = ["--checkpoint_path", str(tmp_path / "pickled.pt"), "--output_dir", str(tmp_path / "out")]
    assert cli.convert_main(arguments) == 1
    assert "--trust_pickle" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.fixture
def converter_cli():
    return conversion_cli


def test_a_used_folder_is_refused_unless_overwritten_and_then_keeps_nothing_stale(eat_reference, tmp_path, capsys):
    # A fine-tuned folder: the model, its run's results, checkpoints and pictures, and a file of the user's.
    folder = tmp_path / "eat-finetuned"
    save_tiny_classifier(folder, 128, {0: "dog", 1: "cat"})
    for name in ("eval_results.json", "all_results.json", "trainer_state.json", "confusion_matrix.png"):
        (folder / name).write_text(name)
    (folder / "checkpoint-5").mkdir()
    (folder / "notes.txt").write_text("mine")
    before = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    arguments = ["--checkpoint_path", str(eat_reference / "fairseq_finetune_tiny.pt"), "--target", "encoder",
                 "--output_dir", str(folder)]

    message = refusal(conversion_cli.convert_main, arguments)
    assert message.startswith(f"error: --output_dir {folder} already holds another model or run (")
    assert "pass --overwrite_output_dir to replace it (those files are deleted, nothing else)" in message
    assert {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()} == before

    assert conversion_cli.convert_main([*arguments, "--overwrite_output_dir"]) == 0
    note = next(line for line in capsys.readouterr().out.splitlines() if "--overwrite_output_dir" in line)
    assert note.startswith("note: --overwrite_output_dir: deleted ")
    assert {"checkpoint-5", "eval_results.json", "trainer_state.json", "confusion_matrix.png"} <= set(
        note.split("deleted ", 1)[1].split(", ")
    )
    left = {path.name for path in folder.iterdir()}
    assert left == {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "notes.txt",
                    *CODE_FILES}
    assert (folder / "notes.txt").read_text() == "mine"
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["EATModel"]

    # Converting a folder onto itself would overwrite what it reads.
    source = tmp_path / "hub_port"
    shutil.copytree(eat_reference / "hub_port_finetune_tiny", source)
    assert "is the folder of --checkpoint_path" in refusal(
        conversion_cli.convert_main, ["--checkpoint_path", str(source), "--output_dir", str(source)]
    )


def test_files_that_are_no_checkpoint_are_named_for_what_they_are(pretraining_checkpoint, tmp_path):
    (tmp_path / "random.pt").write_bytes(bytes(range(7, 256)) * 20)
    (tmp_path / "notes.pt").write_text("epoch 10, mAP 48.6\nsee the paper\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(pretraining_checkpoint, tmp_path / "whole.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "whole.pt").read_bytes()[:5000])
    expectations = {
        "random.pt": "is not a checkpoint: it is neither a torch.save zip archive nor a pickle (it starts with the "
                     "bytes 07 08 09",
        "notes.pt": "is not a checkpoint: it is a text file (it starts with 'epoch 10, mAP 48.6\\nsee the paper",
        "empty.pt": "is not a checkpoint: it is empty",
        "cut.pt": "looks like a PyTorch file (a zip archive) but torch cannot read it (",
    }
    for name, expected in expectations.items():
        for trust_pickle in (False, True):
            with pytest.raises(ConversionError) as error:
                load_source_checkpoint(tmp_path / name, trust_pickle=trust_pickle)
            message = str(error.value)
            assert expected in message, message
            # --trust_pickle would run code from the file: never suggested for one that is no pickle.
            assert "--trust_pickle" not in message and not isinstance(error.value, UnsafeCheckpointError)


def test_folders_and_state_dicts_of_other_models_are_not_called_ours(eat_reference, tmp_path):
    ast = tmp_path / "ast"
    ast.mkdir()
    (ast / "config.json").write_text(json.dumps({"model_type": "audio-spectrogram-transformer", "hidden_size": 768}))
    with pytest.raises(ConversionError, match="holds a 'audio-spectrogram-transformer' model .*, not EAT"):
        load_source_checkpoint(ast)
    untyped = tmp_path / "untyped"
    untyped.mkdir()
    (untyped / "config.json").write_text(json.dumps({"hidden_size": 768}))
    with pytest.raises(ConversionError, match="neither the hub port's keys .* nor a model_type"):
        load_source_checkpoint(untyped)

    ours = tmp_path / "ours"
    EATModel(EATConfig.from_preset("tiny")).save_pretrained(ours)
    with pytest.raises(ConversionError, match="already in this package's layout"):
        load_source_checkpoint(ours)
    torch.save(EATForPreTraining(EATConfig.from_preset("tiny")).state_dict(), tmp_path / "ours.pt")
    with pytest.raises(ConversionError, match="already in this package's layout"):
        load_source_checkpoint(tmp_path / "ours.pt")
    # An AST state dict has `embeddings.patch_embeddings` too, but is not ours.
    ast_keys = {"audio_spectrogram_transformer.embeddings.patch_embeddings.projection.weight": torch.zeros(2),
                "audio_spectrogram_transformer.encoder.layer.0.attention.attention.query.weight": torch.zeros(2)}
    torch.save(ast_keys, tmp_path / "ast.pt")
    with pytest.raises(ConversionError, match="is not an EAT checkpoint this converter knows") as error:
        load_source_checkpoint(tmp_path / "ast.pt")
    assert "already" not in str(error.value)


def test_hub_options_are_the_training_scripts_and_the_old_spellings_still_parse(converter_cli):
    common = ["--checkpoint_path", "x.pt", "--output_dir", "out"]
    current = converter_cli.parse_convert_args(
        [*common, "--push_to_hub", "--hub_model_id", "org/eat", "--hub_token", "t", "--hub_private_repo"]
    )
    assert vars(current) == vars(converter_cli.parse_convert_args([*common, "--push_to_hub", "org/eat", "--token", "t",
                                                           "--private"]))
    assert (current.push_to_hub, current.hub_model_id, current.hub_token, current.hub_private_repo) == (
        True, "org/eat", "t", True
    )
    assert converter_cli.parse_convert_args(common).push_to_hub is False
    with pytest.raises(SystemExit):
        converter_cli.parse_convert_args([*common, "--push_to_hub", "org/a", "--hub_model_id", "org/b"])


def test_refuses_when_the_reference_disagrees(eat_reference, monkeypatch, tmp_path):
    # The reference decoder's LayerNorm eps made wrong: the parity gate must catch the disagreement and write nothing.
    monkeypatch.setattr(reference_forward, "DECODER_NORM_EPS", 0.5)
    with pytest.raises(ConversionError, match=r"more than 0.0001 \(decoder output: ") as error:
        convert_checkpoint(eat_reference / "fairseq_pretrain_tiny.pt", tmp_path / "out", target="pretraining")
    assert "student last_hidden_state" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_reads_hub_port_folder_with_pytorch_bin(eat_reference, tmp_path):
    folder = tmp_path / "hub_port_bin"
    folder.mkdir()
    (folder / "config.json").write_text((eat_reference / "hub_port_finetune_tiny" / "config.json").read_text())
    weights = load_file(eat_reference / "hub_port_finetune_tiny" / "model.safetensors")
    torch.save(weights, folder / "pytorch_model.bin")
    source = load_source_checkpoint(folder)
    assert source.layout.description == "hub remote-code port folder"
    assert source.state_dict.keys() == weights.keys()
    config, converted, _ = plan_conversion(source, "classification")
    dims = (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.max_length)
    assert dims == (64, 3, 4, 256)
    assert torch.equal(converted["classifier.weight"], weights["model.head.weight"])
    assert torch.equal(converted["eat.embeddings.layer_norm.bias"], weights["model.pre_norm.bias"])
