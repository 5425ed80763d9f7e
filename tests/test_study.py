"""The SSL study (modeling_eat/study/): its protocol, data, job runner and report, and one tiny end-to-end run of
`python -m modeling_eat.ssl_study` on real audio."""

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from modeling_eat import EATForPreTraining
from modeling_eat.audio import load_audio_dataset, merge_train_splits, speaker_fold
from modeling_eat.masking_eat import EATMaskGenerator
from modeling_eat.study.diagnostics import gradient_agreement, student_gradient
from modeling_eat.study.protocol import VARIANTS, Job, StudySettings, row_jobs, variant_config, write_row_config
from modeling_eat.study.report import gaps_to_baseline, markdown_table, mean_std, summarise, write_report
from modeling_eat.study.runner import JobFailed, run_job, run_rows

from eat_testing import PROJECT_ROOT, build, spectrogram


VARIANT = {variant.name: variant for variant in VARIANTS}


def test_rows_change_only_what_their_ablation_names():
    settings = StudySettings(preset="tiny")
    base = variant_config(settings, VARIANT["eat"])
    assert (base["mask_strategy"], base["clone_batch"], base["utterance_loss_weight"]) == ("inverse_block", 16, 1.0)
    assert base["utterance_loss_reduction"] == "sum" and base["ema_scale_with_run"]
    for name, changed in [("no_utterance_loss", {"utterance_loss_weight": 0.0}),
                          ("random_masks", {"mask_strategy": "random"}), ("one_clone", {"clone_batch": 1})]:
        config = variant_config(settings, VARIANT[name])
        assert {key: value for key, value in config.items() if base.get(key) != value} == changed, name
    maskspec = variant_config(settings, VARIANT["maskspec"])
    assert (maskspec["pretraining_objective"], maskspec["mask_strategy"], maskspec["clone_batch"]) == (
        "maskspec", "random", 1)
    assert variant_config(settings, VARIANT["random_init"]) == base


def test_random_init_row_saves_the_model_after_zero_steps(tmp_path):
    settings = StudySettings(pretrain_steps=123)
    pretrain, probe, finetune = row_jobs(
        settings, VARIANT["random_init"], 2, tmp_path, tmp_path / "pre", tmp_path / "eval"
    )
    assert pretrain.command[pretrain.command.index("--max_train_steps") + 1] == "0"
    assert pretrain.command[pretrain.command.index("--seed") + 1] == "2"
    eat_pretrain = row_jobs(settings, VARIANT["eat"], 2, tmp_path, tmp_path / "pre", tmp_path / "eval")[0]
    assert eat_pretrain.command[eat_pretrain.command.index("--max_train_steps") + 1] == "123"
    # Every row fine-tunes with the same settings, the layer decay included (the script would pick it by itself).
    assert finetune.command[finetune.command.index("--layer_decay") + 1] == str(settings.finetune_layer_decay)
    assert str(probe.marker).endswith("random_init/seed_2/probe.json")
    config = json.loads(write_row_config(settings, VARIANT["one_clone"], 2, tmp_path).read_text())
    assert config["clone_batch"] == 1


def test_runner_skips_finished_jobs_and_names_the_log_of_a_failure(tmp_path):
    marker = tmp_path / "done.txt"
    writes = Job("writes", (sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"), marker,
                 tmp_path / "writes.log")
    assert run_rows([[writes]], parallel=1).keys() == {"writes"}
    assert run_job(writes, {}) == 0.0  # its marker exists: skipped
    failing = Job("fails", (sys.executable, "-c", "print('boom'); raise SystemExit(3)"), tmp_path / "never",
                  tmp_path / "fails.log")
    with pytest.raises(JobFailed, match=r"fails failed \(exit code 3\); see .*fails.log"):
        run_rows([[failing]], parallel=1)
    assert "boom" in (tmp_path / "fails.log").read_text()


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
        rows.append({"variant": "random_init", "seed": seed, "probe_cls": base, "probe_mean": base, "finetune": 0.6})
        rows.append({"variant": "eat", "seed": seed, "probe_cls": eat, "probe_mean": eat + 0.1, "finetune": 0.7})
    return rows


def test_summary_is_mean_and_sample_std_and_gaps_are_paired_by_seed():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0) and mean_std([4.0]) == (4.0, 0.0)
    summary = summarise(fake_rows())
    assert summary["eat"]["probe_cls"] == pytest.approx((0.53, 0.0360555, 3), abs=1e-6)
    assert summary["one_clone"] == {}
    gap, gap_std = gaps_to_baseline(fake_rows())["eat"]["probe_cls"]
    assert gap == pytest.approx(0.21) and gap_std == pytest.approx(mean_std([0.22, 0.16, 0.25])[1])
    table = markdown_table(fake_rows())
    assert "| eat | 0.530 ± 0.036 (+0.210 ± 0.046)" in table
    assert "one_clone" not in table  # rows not run are left out, not shown empty


def test_study_command_runs_every_job_and_reports(tmp_path, fsdd_dir):
    data = tmp_path / "digits"
    for split, per_class in (("train", 3), ("test", 2)):
        (data / split).mkdir(parents=True)
        with open(fsdd_dir / split / "metadata.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        chosen = [row for row in rows if int(row["take"]) < per_class]
        for row in chosen:
            os.symlink(fsdd_dir / split / row["file_name"], data / split / row["file_name"])
        (data / split / "metadata.csv").write_text(
            "file_name,label\n" + "".join(f"{row['file_name']},{row['label']}\n" for row in chosen)
        )
    command = [sys.executable, "-m", "modeling_eat.ssl_study", "--dataset_name", str(data), "--output_dir",
               str(tmp_path / "study"), "--rows", "random_init", "eat", "--seeds", "0", "--preset", "tiny",
               "--pretrain_steps", "3", "--pretrain_batch_size", "4", "--finetune_steps", "3",
               "--synthetic_clips_per_class", "1"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    results = json.loads((tmp_path / "study" / "results.json").read_text())
    measured = {row["variant"]: row for row in results["rows"] if "finetune" in row}
    assert set(measured) == {"random_init", "eat"}
    for row in measured.values():
        assert 0.0 <= row["probe_cls"] <= 1.0 and 0.0 <= row["probe_mean"] <= 1.0 and row["chance"] == 0.1
    assert measured["eat"]["pretraining"]["step"] == 3 and "teacher_distance" in measured["eat"]["pretraining"]
    assert "pretraining" not in measured["random_init"]  # zero steps: nothing logged
    assert (tmp_path / "study" / "results.png").stat().st_size > 0
    assert "| eat |" in result.stdout
    # The same folder refuses other settings rather than mixing results.
    other = subprocess.run(command[:-2] + ["--synthetic_clips_per_class", "1", "--finetune_steps", "4"],
                           capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600)
    assert other.returncode != 0 and "holds a study with other settings or data" in other.stderr


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


def test_rewritten_report_keeps_the_measured_wall_times_and_leaves_out_rows_not_run(tmp_path):
    settings = StudySettings(seeds=(0,))
    for variant, accuracy in (("random_init", 0.3), ("eat", 0.6)):
        folder = tmp_path / "runs" / variant / "seed_0"
        folder.mkdir(parents=True)
        (folder / "probe.json").write_text(json.dumps({"cls": accuracy, "mean": accuracy, "chance": 0.1}))
    write_report(tmp_path, settings, {"eat/seed_0/pretrain": 80.0, "total": 100.0})
    write_report(tmp_path, settings)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["timings_s"] == {"eat/seed_0/pretrain": 80.0, "total": 100.0}
    assert [row["variant"] for row in results["rows"]] == ["random_init", "eat"]
    report = (tmp_path / "report.md").read_text()
    assert "- `eat`: EAT with the defaults" in report and "maskspec" not in report
