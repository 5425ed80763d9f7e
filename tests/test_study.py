"""The SSL study (modeling_eat/study/): its protocol, data, job runner and report, and one tiny end-to-end run of
`python -m modeling_eat.ssl_study` on real audio."""

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from modeling_eat import EATForPreTraining
from modeling_eat.audio import load_audio_dataset, merge_train_splits, speaker_fold
from modeling_eat.masking_eat import EATMaskGenerator
from modeling_eat.study.cli import check_study_folder, parse_study_args
from modeling_eat.study.data import DRUM_TEST_KITS, DRUM_TRAIN_KITS, build_drum_hits, drum_class
from modeling_eat.study.diagnostics import gradient_agreement, student_gradient, term_shares
from modeling_eat.study.protocol import (
    SLOW_FIXED,
    VARIANTS,
    VARIANTS_BY_NAME,
    Evaluation,
    Job,
    Run,
    StudySettings,
    run_dir,
    run_jobs,
    study_runs,
    variant_config,
    write_run_config,
)
from modeling_eat.study.report import collect, markdown_table, mean_std, runs_table, summarise, write_report
from modeling_eat.study.runner import JobFailed, run_job, run_rows

from eat_testing import PROJECT_ROOT, build, spectrogram, tone, write_wav


VARIANT = {variant.name: variant for variant in VARIANTS}


def test_rows_change_only_what_their_ablation_names():
    base = variant_config("tiny", VARIANT["eat"])
    assert (base["mask_strategy"], base["clone_batch"], base["utterance_loss_weight"]) == ("inverse_block", 16, 1.0)
    assert base["utterance_loss_reduction"] == "sum" and base["ema_scale_with_run"]
    for name, changed in [("no_utterance_loss", {"utterance_loss_weight": 0.0}),
                          ("random_masks", {"mask_strategy": "random"}), ("one_clone", {"clone_batch": 1})]:
        config = variant_config("tiny", VARIANT[name])
        assert {key: value for key, value in config.items() if base.get(key) != value} == changed, name
    maskspec = variant_config("tiny", VARIANT["maskspec"])
    assert (maskspec["pretraining_objective"], maskspec["mask_strategy"], maskspec["clone_batch"]) == (
        "maskspec", "random", 1)
    assert variant_config("tiny", VARIANT["random_init"]) == base


def test_candidate_rows_change_the_ema_the_utterance_reduction_or_both():
    base = variant_config("tiny", VARIANT["eat"])

    def changed(name):
        return {key: value for key, value in variant_config("tiny", VARIANTS_BY_NAME[name]).items()
                if base.get(key) != value}

    slow_ema = {"ema_scale_with_run": False, **SLOW_FIXED}
    assert changed("ema_slow_fixed") == slow_ema
    assert changed("mean_utterance") == {"utterance_loss_reduction": "mean"}
    assert changed("ema_slow_fixed_mean_utterance") == {**slow_ema, "utterance_loss_reduction": "mean"}


def test_runs_span_presets_lengths_and_seeds_with_one_random_init_per_preset_and_seed():
    settings = StudySettings(presets=("tiny", "small"), pretrain_steps=(2000, 500), seeds=(0, 1))
    runs = study_runs(settings, ["random_init", "eat"])
    assert runs[:6] == [Run("random_init", "tiny", 0, 0), Run("eat", "tiny", 500, 0), Run("eat", "tiny", 2000, 0),
                        Run("random_init", "small", 0, 0), Run("eat", "small", 500, 0), Run("eat", "small", 2000, 0)]
    assert len(runs) == 12 and {run.seed for run in runs[6:]} == {1}  # seed-major


def test_random_init_run_saves_the_model_after_zero_steps_and_every_data_set_is_evaluated(tmp_path):
    settings = StudySettings(pretrain_steps=(123,))
    evaluations = [Evaluation("digits", tmp_path / "digits", {2: tmp_path / "few_digits"}),
                   Evaluation("drums", tmp_path / "drums", {2: tmp_path / "drums"})]
    pretrain, *evaluation_jobs = run_jobs(settings, Run("random_init", "small", 0, 2), tmp_path, tmp_path / "pre",
                                          evaluations)
    assert pretrain.command[pretrain.command.index("--max_train_steps") + 1] == "0"
    assert pretrain.command[pretrain.command.index("--seed") + 1] == "2"
    assert pretrain.command[pretrain.command.index("--dataset_name") + 1] == str(tmp_path / "pre")
    # A pre-training without its marker was stopped: its rerun starts over rather than refusing the folder.
    assert "--overwrite_output_dir" in pretrain.command
    assert [job.kind for job in evaluation_jobs] == ["probe", "finetune"] * 2
    probe, finetune = evaluation_jobs[:2]
    assert probe.command[probe.command.index("--dataset_name") + 1] == str(tmp_path / "digits")
    # The fine-tuning trains on the seed's few-label subset and scores on its test split.
    assert finetune.command[finetune.command.index("--dataset_name") + 1] == str(tmp_path / "few_digits")
    # Every row fine-tunes with the same settings, the layer decay included (the script would pick it by itself).
    assert finetune.command[finetune.command.index("--layer_decay") + 1] == str(settings.finetune_layer_decay)
    assert str(probe.marker).endswith("random_init/small/0_steps/seed_2/digits/probe.json")
    assert str(evaluation_jobs[2].marker).endswith("seed_2/drums/probe.json")
    eat_pretrain = run_jobs(settings, Run("eat", "small", 123, 2), tmp_path, tmp_path / "pre", evaluations)[0]
    assert eat_pretrain.command[eat_pretrain.command.index("--max_train_steps") + 1] == "123"
    config = json.loads(write_run_config(Run("one_clone", "tiny", 123, 2), tmp_path).read_text())
    assert config["clone_batch"] == 1 and config["hidden_size"] == 64


def test_runner_skips_finished_jobs_and_names_the_log_of_a_failure(tmp_path):
    marker = tmp_path / "done.txt"
    writes = Job("writes", "probe", (sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"), marker,
                 tmp_path / "writes.log")
    assert run_rows([[writes]], parallel=1).keys() == {"writes"}
    timing = json.loads((tmp_path / "writes.timing.json").read_text())
    assert timing["wall_s"] > 0 and set(timing) == {"wall_s", "started", "load_average"}
    assert run_job(writes, {}) == 0.0  # its marker exists: skipped
    failing = Job("fails", "probe", (sys.executable, "-c", "print('boom'); raise SystemExit(3)"), tmp_path / "never",
                  tmp_path / "fails.log")
    with pytest.raises(JobFailed, match=r"fails failed \(exit code 3\); see .*fails.log"):
        run_rows([[failing]], parallel=1)
    assert "boom" in (tmp_path / "fails.log").read_text()
    assert not (tmp_path / "fails.timing.json").exists()


def test_merged_pretraining_set_lists_every_train_clip_without_labels(tmp_path, fsdd_dir):
    second = tmp_path / "second"
    (second / "train").mkdir(parents=True)
    source = fsdd_dir / "train" / "0_george_0.wav"
    os.symlink(source, second / "train" / "clip.wav")
    (second / "train" / "metadata.csv").write_text("file_name,label\nclip.wav,x\n")
    merged = merge_train_splits([fsdd_dir, second], tmp_path / "merged")
    with open(merged / "train" / "metadata.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2501 and set(rows[0]) == {"file_name"}
    dataset = load_audio_dataset(str(merged))
    assert len(dataset) == 2501 and dataset.column_names == ["audio"]
    assert Path(dataset[2500]["audio"]["path"]).resolve() == source.resolve()


def fake_rows() -> list[dict]:
    rows = []
    for seed, (base, eat) in enumerate([(0.30, 0.52), (0.34, 0.50), (0.32, 0.57)]):
        common = {"dataset": "digits", "preset": "tiny", "seed": seed}
        rows.append({**common, "variant": "random_init", "steps": 0, "probe_cls": base, "probe_mean": base,
                     "finetune": 0.6})
        rows.append({**common, "variant": "eat", "steps": 500, "probe_cls": eat, "probe_mean": eat + 0.1,
                     "finetune": 0.7})
    return rows


def entry(summary, variant, metric, steps=None):
    return next(item for item in summary if item["variant"] == variant and item["metric"] == metric
                and steps in (None, item["steps"]))


def test_summary_is_mean_and_sample_std_and_gaps_are_paired_by_seed():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0) and mean_std([4.0]) == (4.0, 0.0)
    summary = summarise(fake_rows())
    eat = entry(summary, "eat", "probe_cls")
    assert (eat["mean"], eat["std"], eat["seeds"]) == (pytest.approx(0.53), pytest.approx(0.0360555), [0, 1, 2])
    assert eat["gap"] == pytest.approx(0.21) and eat["gap_std"] == pytest.approx(mean_std([0.22, 0.16, 0.25])[1])
    assert "gap" not in entry(summary, "random_init", "probe_cls")
    # A baseline of another preset is no baseline: nothing to pair with.
    other = [dict(row, preset="small") if row["variant"] == "random_init" else row for row in fake_rows()]
    assert "gap" not in entry(summarise(other), "eat", "probe_cls")
    table = markdown_table(fake_rows())
    assert "| eat | tiny | 500 | 0.530 ± 0.036 (+0.210 ± 0.046)" in table and "| 0, 1, 2 |" in table
    assert "one_clone" not in table  # rows not run are left out, not shown empty
    # One seed has no spread: its cell says so rather than showing ± 0.
    assert "| eat | tiny | 500 | 0.520 (+0.220), seed 0 only |" in markdown_table(fake_rows()[:2])


def write_fake_run(output_dir, run, dataset, probe=None, finetune=None, wall_s=None):
    folder = run_dir(output_dir, run) / dataset
    folder.mkdir(parents=True, exist_ok=True)
    if probe is not None:
        (folder / "probe.json").write_text(json.dumps({"cls": probe, "mean": probe, "chance": 0.2}))
    if finetune is not None:
        (folder / "finetuned").mkdir()
        (folder / "finetuned" / "eval_results.json").write_text(json.dumps({"eval_accuracy": finetune}))
    if wall_s is not None:
        (folder / "probe.timing.json").write_text(json.dumps({"wall_s": wall_s}))


def test_report_of_a_sweep_has_every_run_its_wall_times_and_a_learning_curve(tmp_path):
    for seed in (0, 1):
        for dataset in ("digits", "drums"):
            write_fake_run(tmp_path, Run("random_init", "tiny", 0, seed), dataset, 0.3, 0.4, wall_s=10.0)
            for steps, gain in ((500, 0.1), (2000, 0.2)):
                write_fake_run(tmp_path, Run("eat", "tiny", steps, seed), dataset, 0.3 + gain + seed / 100, 0.5)
    (run_dir(tmp_path, Run("eat", "tiny", 500, 0)) / "pretrain.timing.json").write_text(json.dumps({"wall_s": 42.0}))
    rows = collect(tmp_path)
    assert len(rows) == 12 and {row["dataset"] for row in rows} == {"digits", "drums"}
    first = next(row for row in rows if row["variant"] == "eat" and row["steps"] == 500 and row["seed"] == 0)
    assert first["pretrain_s"] == 42.0
    assert "| digits | random_init | tiny | 0 | 0 | 0.300 | 0.300 | 0.400 | — | 10 | — |" in runs_table(rows)
    curve = entry(summarise([row for row in rows if row["dataset"] == "drums"]), "eat", "probe_cls", 2000)
    assert curve["gap"] == pytest.approx(0.205) and curve["seeds"] == [0, 1]
    settings = StudySettings(presets=("tiny",), pretrain_steps=(500, 2000), seeds=(0, 1))
    report = write_report(tmp_path, settings, {"total": 7.0}).read_text()
    assert "**drums**" in report and "Wall time of each invocation of the study: 7 s." in report
    write_report(tmp_path, settings, {"total": 3.0})
    assert json.loads((tmp_path / "results.json").read_text())["invocations"] == [{"total": 7.0}, {"total": 3.0}]
    assert (tmp_path / "results.png").stat().st_size > 0


def test_a_study_folder_takes_more_seeds_lengths_and_sizes_but_no_other_settings(tmp_path):
    _, settings = parse_study_args(["--dataset_name", "a", "--presets", "tiny", "--pretrain_steps", "500",
                                    "--seeds", "0"])
    recorded = {**settings.to_dict(), "rows": ["eat"], "dataset_name": ["a"]}
    check_study_folder(tmp_path, dict(recorded))
    extended = check_study_folder(tmp_path, {**recorded, "presets": ["small"], "pretrain_steps": [500, 1000],
                                             "seeds": [1], "rows": ["random_init"]})
    assert (extended["presets"], extended["pretrain_steps"], extended["seeds"]) == (["tiny", "small"], [500, 1000],
                                                                                    [0, 1])
    assert extended["rows"] == ["eat", "random_init"]
    with pytest.raises(SystemExit, match="holds a study with other settings or data"):
        check_study_folder(tmp_path, {**recorded, "finetune_steps": 5})
    with pytest.raises(SystemExit, match="holds a study with other settings or data"):
        check_study_folder(tmp_path, {**recorded, "dataset_name": ["b"]})


def test_study_arguments_name_what_is_wrong(capsys):
    with pytest.raises(SystemExit):
        parse_study_args(["--dataset_name", "a", "--presets", "huge"])
    assert "--presets ['huge']: choose among" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_study_args(["--dataset_name", "x/a", "y/a"])
    assert "folder names key their results and must differ" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_study_args(["--dataset_name", "a", "b", "--validation_speaker", "george"])
    assert "pass a single --dataset_name" in capsys.readouterr().err


def digit_subset(fsdd_dir, folder, per_class: dict) -> Path:
    for split, takes in per_class.items():
        (folder / split).mkdir(parents=True)
        with open(fsdd_dir / split / "metadata.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        chosen = [row for row in rows if int(row["take"]) < takes]
        for row in chosen:
            os.symlink(fsdd_dir / split / row["file_name"], folder / split / row["file_name"])
        (folder / split / "metadata.csv").write_text(
            "file_name,label\n" + "".join(f"{row['file_name']},{row['label']}\n" for row in chosen)
        )
    return folder


def test_study_command_runs_every_job_on_every_data_set_and_reports(tmp_path, fsdd_dir):
    digits = digit_subset(fsdd_dir, tmp_path / "digits", {"train": 3, "test": 2})
    # A second data set: other clips, the labels of which make two classes.
    second = digit_subset(fsdd_dir, tmp_path / "second", {"train": 1, "test": 1})
    for split in ("train", "test"):
        metadata = second / split / "metadata.csv"
        lines = metadata.read_text().splitlines()
        metadata.write_text("\n".join([lines[0], *(f"{line.split(',')[0]},{'low' if line[0] < '5' else 'high'}"
                                                    for line in lines[1:])]) + "\n")
    command = [sys.executable, "-m", "modeling_eat.ssl_study", "--dataset_name", str(digits), str(second),
               "--output_dir", str(tmp_path / "study"), "--rows", "random_init", "eat", "--seeds", "0", "--presets",
               "tiny", "--pretrain_steps", "3", "--pretrain_batch_size", "4", "--finetune_steps", "3",
               "--finetune_labels_per_class", "2", "--synthetic_clips_per_class", "1"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Pre-trained once on the union of the train splits (150 + 50 clips) and the synthetic set.
    pretraining = (tmp_path / "study" / "data" / "pretraining" / "train" / "metadata.csv").read_text()
    assert pretraining.count("digits/") == 150 and pretraining.count("second/") == 50
    few = (tmp_path / "study" / "data" / "digits_2_per_class" / "seed_0" / "train" / "metadata.csv").read_text()
    assert len(few.splitlines()) == 1 + 2 * 10
    results = json.loads((tmp_path / "study" / "results.json").read_text())
    measured = {(row["variant"], row["dataset"]): row for row in results["rows"] if "finetune" in row}
    assert set(measured) == {(variant, dataset) for variant in ("random_init", "eat")
                             for dataset in ("digits", "second")}
    for row in measured.values():
        assert 0.0 <= row["probe_cls"] <= 1.0 and 0.0 <= row["probe_mean"] <= 1.0
        assert row["probe_s"] > 0 and row["finetune_s"] > 0 and row["pretrain_s"] > 0
    assert measured["eat", "digits"]["chance"] == 0.1 and measured["eat", "second"]["chance"] == 0.5
    assert measured["eat", "digits"]["pretraining"]["step"] == 3
    assert "teacher_distance" in measured["eat", "digits"]["pretraining"]
    assert "pretraining" not in measured["random_init", "digits"]  # zero steps: nothing logged
    assert (tmp_path / "study" / "results.png").stat().st_size > 0
    assert "| eat | tiny | 3 |" in result.stdout and "**second**" in result.stdout


def test_speaker_fold_holds_out_one_train_speaker_and_never_the_test_split(tmp_path, fsdd_dir):
    fold = speaker_fold(fsdd_dir, tmp_path / "fold", "yweweler")
    with open(fold / "test" / "metadata.csv", newline="") as handle:
        test = list(csv.DictReader(handle))
    with open(fold / "train" / "metadata.csv", newline="") as handle:
        train = list(csv.DictReader(handle))
    assert {row["speaker"] for row in test} == {"yweweler"} and len(test) == 500
    assert {row["speaker"] for row in train} == {"george", "jackson", "lucas", "nicolas"} and len(train) == 2000
    assert all((fold / "test" / row["file_name"]).resolve().parent == (fsdd_dir / "train").resolve() for row in test)
    with pytest.raises(ValueError, match="speaker 'theo' is not in"):
        speaker_fold(fsdd_dir, tmp_path / "other", "theo")


def test_gradient_agreement_measures_mask_and_clip_noise_per_term():
    model = build(EATForPreTraining)
    batches = [{"input_values": spectrogram(2, seed=seed)} for seed in range(3)]
    results = gradient_agreement(model, batches, clone_counts=(1, 2), draws=2)
    assert set(results) == {"loss", "frame_loss", "utterance_loss"}
    # `masks` with 2 draws and 1 clone: the cosine between the first batch's gradients under mask seeds 0 and 1;
    # `clips`: the mean cosine over pairs of batches under mask seed 0.
    one_clone = copy.deepcopy(model.config)
    one_clone.clone_batch = 1
    masks = EATMaskGenerator(one_clone)

    def gradient(batch, draw, term="loss"):
        return student_gradient(model, batch, masks(2, 8, 8, torch.Generator().manual_seed(draw)), draw, term)

    cosine = torch.nn.functional.cosine_similarity
    assert results["loss"]["1"]["masks"] == pytest.approx(float(cosine(gradient(batches[0], 0),
                                                                        gradient(batches[0], 1), dim=0)))
    by_batch = [gradient(batch, 0) for batch in batches]
    pairs = [float(cosine(by_batch[i], by_batch[j], dim=0)) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert results["loss"]["1"]["clips"] == pytest.approx(sum(pairs) / 3)
    assert results["loss"]["1"]["norm"] == pytest.approx(sum(float(g.norm()) for g in by_batch) / 3)
    assert results["loss"]["2"]["masks"] != pytest.approx(results["loss"]["1"]["masks"])  # the clone count is used
    # The terms' gradients add up to the loss's (utterance weight 1).
    torch.testing.assert_close(gradient(batches[0], 0), gradient(batches[0], 0, "frame_loss")
                               + gradient(batches[0], 0, "utterance_loss"), rtol=1e-4, atol=1e-6)


def test_term_shares_split_the_step_between_the_frame_and_the_utterance_term():
    model = build(EATForPreTraining)
    batches = [{"input_values": spectrogram(2, seed=seed)} for seed in range(2)]
    shares = term_shares(model, batches)
    masks = EATMaskGenerator(model.config)(2, 8, 8, torch.Generator().manual_seed(0))
    rows = 2 * model.config.clone_batch
    by_hand = {"sum": [], "mean": []}
    for batch in batches:
        frame = student_gradient(model, batch, masks, 0, "frame_loss")
        utterance = student_gradient(model, batch, masks, 0, "utterance_loss")
        for reduction, weighted in (("sum", utterance), ("mean", utterance / rows)):
            step = frame + weighted
            by_hand[reduction].append(float(step @ weighted / (step @ step)))
            # The frame term's share is the rest of the step.
            assert float(step @ frame / (step @ step)) == pytest.approx(1 - by_hand[reduction][-1], abs=1e-5)
    for reduction in ("sum", "mean"):
        assert shares[reduction]["utterance_share"] == pytest.approx(sum(by_hand[reduction]) / 2, rel=1e-4)
    # The official sum weighs the utterance term by the batch's rows.
    assert shares["sum"]["utterance_norm"] == pytest.approx(rows * shares["mean"]["utterance_norm"], rel=1e-5)
    assert shares["sum"]["utterance_share"] > shares["mean"]["utterance_share"]


def test_rewritten_report_leaves_out_rows_not_run(tmp_path):
    for variant, accuracy in (("random_init", 0.3), ("eat", 0.6)):
        write_fake_run(tmp_path, Run(variant, "small", 600 if variant == "eat" else 0, 0), "digits", accuracy)
    write_report(tmp_path, StudySettings(seeds=(0,)))
    results = json.loads((tmp_path / "results.json").read_text())
    assert [row["variant"] for row in results["rows"]] == ["random_init", "eat"]
    report = (tmp_path / "report.md").read_text()
    assert "- `eat`: EAT with the defaults" in report and "maskspec" not in report


def test_drum_classes_follow_the_kits_instrument_names():
    names = {"Pearl Kick": "kick", "c3 - bass drum 1": "kick", "BassDrum": "kick", "Sabian Hat Closed": "hihat",
             "Closed HH": "hihat", "Snare Rimshot": "snare", "Tom Low": "tom", "Floor Tom": "tom",
             "ride-cup": "cymbal", "Paiste Bell": "cymbal", "crash16inch": "cymbal", "Cowbell": None,
             "Hand Clap": None, "Rim Click": None, "Pearl Side Stick": None, "tomhi2": "tom"}
    assert {name: drum_class(name) for name in names} == names


KIT_XML = """<?xml version="1.0" encoding="UTF-8"?>
<drumkit_info{namespace}><name>{kit}</name><instrumentList>
 <instrument><id>0</id><name>Kick</name><layer><filename>kick_soft.wav</filename></layer>
  <layer><filename>kick_hard.wav</filename></layer></instrument>
 <instrument><id>1</id><name>Cowbell</name><filename>cowbell.wav</filename></instrument>
 <instrument><id>2</id><name>Open HH</name><filename>hat.wav</filename></instrument>
</instrumentList></drumkit_info>
"""


def test_drum_hits_split_by_kit_with_every_layer_a_clip_at_16_khz(tmp_path):
    kits = tmp_path / "drumkits"
    for index, kit in enumerate(DRUM_TRAIN_KITS + DRUM_TEST_KITS):
        (kits / kit).mkdir(parents=True)
        # Older kits have no namespace, newer ones do: both are read.
        namespace = ' xmlns="http://www.hydrogen-music.org/drumkit"' if index % 2 else ""
        (kits / kit / "drumkit.xml").write_text(KIT_XML.format(namespace=namespace, kit=kit))
        for sample in ("kick_soft", "kick_hard", "cowbell", "hat"):
            write_wav(kits / kit / f"{sample}.wav", np.stack([tone(200.0, 44100, 0.25)] * 2, axis=1), 44100)
    counts = build_drum_hits([kits], tmp_path / "drum_hits")
    assert counts == {"train": {"hihat": 7, "kick": 14}, "test": {"hihat": 2, "kick": 4}}
    with open(tmp_path / "drum_hits" / "test" / "metadata.csv", newline="") as handle:
        test = list(csv.DictReader(handle))
    assert {row["kit"] for row in test} == set(DRUM_TEST_KITS)
    assert [row["label"] for row in test[:3]] == ["kick", "kick", "hihat"]  # drumkit.xml's order, cowbell left out
    dataset = load_audio_dataset(str(tmp_path / "drum_hits"), split="test", label_column_name="label")
    waveform, rate = soundfile.read(dataset[0]["audio"]["path"])
    assert rate == 16000 and waveform.ndim == 1 and len(waveform) == 4000
    (kits / DRUM_TEST_KITS[0] / "drumkit.xml").unlink()
    with pytest.raises(FileNotFoundError, match=f"drum kits \\['{DRUM_TEST_KITS[0]}'\\] not found"):
        build_drum_hits([kits], tmp_path / "again")
