"""Each benchmark script runs end to end at its `--smoke` sizes and writes the JSON it promises.

No timing is asserted (the figures depend on the machine); what is checked is that the scripts measure what they
say: both models in the same run, the plain pre-training step doing the same arithmetic as ours, the alternative
decoder convolution agreeing with `nn.Conv2d`, the loader's batches having the collator's shape.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eat_testing import PROJECT_ROOT


BENCHMARKS = PROJECT_ROOT / "benchmarks"


def run_smoke(script: str, tmp_path: Path, *extra: str, timeout: int = 300) -> dict:
    output = tmp_path / f"{script}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--smoke", "--json", str(output), *extra],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    payload = json.loads(output.read_text())
    assert payload["results"], "the script wrote no results"
    return payload


def check_machine(payload: dict) -> None:
    machine = payload["machine"]
    assert machine["torch"] and machine["transformers"] and machine["cpu"] and machine["date"]
    assert machine["torch_threads"] >= 1
    assert "--smoke" in payload["command"]


def test_inference_smoke(tmp_path):
    # --smoke takes the GPU's lists of attention kernels, precisions and compile variants, so that every path the
    # one-shot GPU run takes has run here first.
    payload = run_smoke("bench_inference", tmp_path)
    check_machine(payload)
    assert "cuda" in payload["machine"]
    rows = payload["results"]
    throughput = [row for row in rows if row["section"] == "throughput"]
    ok = [row for row in throughput if row["status"] == "ok"]
    # Both models, every portable attention implementation (sdpa also restricted to its flash kernel, which CPUs
    # have), every precision, and the ratio on EAT's rows.
    assert {(row["model"], row["attention"], row["dtype"]) for row in ok} == {
        (model, attention, dtype) for model in ("EAT", "AST") for attention in ("eager", "sdpa", "sdpa:flash")
        for dtype in ("fp32", "bf16", "bf16-autocast")
    }
    assert all(row["clips_per_s"] > 0 for row in ok)
    assert all("EAT/AST clips/s" in row for row in ok if row["model"] == "EAT")
    # cuDNN attention does not exist on CPU: recorded as not run, the run goes on.
    cudnn = [row for row in throughput if row["attention"] == "sdpa:cudnn"]
    assert len(cudnn) == 6 and all(row["status"].startswith("not run: sdpa kernel 'cudnn'") for row in cudnn)
    flash = [row for row in rows if row.get("attention") == "flash_attention_2"]
    assert len(flash) == 6 and all(row["status"] == "ok" or row["status"].startswith("not run: ") for row in flash)
    latency = [row for row in rows if row["section"] == "latency"]
    assert [row["model"] for row in latency] == ["EAT", "AST"] and latency[0]["threads"] == 2

    (breaks,) = [row for row in rows if row["section"] == "compile_graph_breaks"]
    # The plain forward compiles to one graph; hidden states break it only on the call that installs the hooks.
    assert breaks["explain"] == {"graphs": 1, "graph_breaks": 0, "break_reasons": []}
    assert breaks["explain_output_hidden_states_first_call"]["graph_breaks"] == 1
    assert breaks["explain_output_hidden_states_later_calls"]["graph_breaks"] == 0
    cast, autocast = [row for row in rows if row["section"] == "compile"]
    assert [(row["model"], row["dtype"], row["mode"], row["status"]) for row in (cast, autocast)] == [
        ("EAT", "bf16", "default", "ok"), ("EAT", "bf16-autocast", "default", "ok")
    ]
    # The dtypes the captured graph computes in: all bf16 for the cast model; under autocast the matmuls are bf16
    # and the layer norms fp32.
    assert set(cast["explain"]["ops"]["linear"]) == {"bfloat16"} == set(cast["explain"]["ops"]["layer_norm"])
    assert set(autocast["explain"]["ops"]["linear"]) == {"bfloat16"}
    assert set(autocast["explain"]["ops"]["layer_norm"]) == {"float32"}
    for row in (cast, autocast):
        assert row["first_call_s"] > 0 and row["compiled_clips_per_s"] > 0 and row["eager_clips_per_s"] > 0
        assert row["recompilations_in_steady_state"] == 0 and row["compiled_output_dtype"] == "bfloat16"
        assert row["max_abs_diff_vs_eager"] < 0.05
    # Only the batch size changed (the new batch is no inference tensor): one recompilation, for the size.
    assert cast["recompilations_for_new_batch"] == 1 and cast["compiled_after_new_batch_clips_per_s"] > 0
    (reason,) = cast["recompile_reasons"]
    assert "size mismatch" in reason and "dispatch key" not in reason
    assert {row["dtype"] for row in payload["matmul_probe"]} == {"fp32", "bf16"}
    eat_flops, ast_flops = [row for row in rows if row["section"] == "flops"]
    # Same width and depth at the smoke sizes, so the FLOPs ratio is the token ratio: 64 + 1 against AST's
    # 12 x 12 overlapping patches + 2 on 128 frames.
    assert eat_flops["EAT/AST flops"] < 0.6 and ast_flops["gflop_per_clip"] > eat_flops["gflop_per_clip"]


# torchaudio as the GPU machine has it, for the path this machine cannot take: its fbank is ours, called the way
# ASTFeatureExtractor calls torchaudio's.
TORCHAUDIO_STUB = """
from modeling_eat.feature_extraction_eat import kaldi_fbank


def fbank(waveform, sample_frequency, window_type, num_mel_bins):
    assert waveform.ndim == 2 and window_type == "hanning"
    return kaldi_fbank(waveform[0], sampling_rate=int(sample_frequency), num_mel_bins=num_mel_bins,
                       remove_clip_mean=False)
"""


def test_feature_extraction_smoke(tmp_path):
    # The project's machines never have torchaudio (ENVIRONMENT.md); the script must say so and go on.
    assert importlib.util.find_spec("torchaudio") is None, "this test expects torchaudio not to be installed"
    # One thread: two on a machine busy with other jobs can make each call 50x slower (BENCHMARKS.md, section 3).
    payload = run_smoke("bench_feature_extraction", tmp_path, "--device", "cpu", "--threads", "1")
    check_machine(payload)
    rows = {(row["section"], row["name"], row["batch"], row["threads"]): row for row in payload["results"]}
    assert set(rows) == {
        ("cpu", "EATFeatureExtractor", 4, 1), ("cpu", "ASTFeatureExtractor (numpy)", 4, 1),
        ("torchaudio", "torchaudio kaldi.fbank per clip", 4, 1),
        *(("device", name, batch, 1) for batch in (4, 8)
          for name in ("EATFeatureExtractor", "kaldi_fbank (batched core)", "torchaudio kaldi.fbank per clip")),
    }
    missing = [row for row in rows.values() if row["name"].startswith("torchaudio")]
    assert len(missing) == 3
    assert all(row["status"] == "not run: torchaudio not importable: ModuleNotFoundError: No module named "
               "'torchaudio'" for row in missing)
    for row in rows.values():
        if row["status"] == "ok":
            assert row["clips_per_s"] > 0 and row["best_clips_per_s"] >= row["clips_per_s"]
    extractor = [row for row in rows.values() if row["section"] == "device" and row["name"] == "EATFeatureExtractor"]
    # On CPU the "device" path is the CPU path: the same numbers exactly.
    assert all(row["h2d_clips_per_s"] > 0 and row["max_abs_diff_vs_cpu"] == 0.0 for row in extractor)
    assert rows[("cpu", "EATFeatureExtractor", 4, 1)]["vs AST"] > 0


def test_feature_extraction_with_torchaudio(tmp_path, monkeypatch):
    stub = tmp_path / "stub" / "torchaudio"
    (stub / "compliance").mkdir(parents=True)
    (stub / "__init__.py").write_text("")
    (stub / "compliance" / "__init__.py").write_text("")
    (stub / "compliance" / "kaldi.py").write_text(TORCHAUDIO_STUB)
    monkeypatch.setenv("PYTHONPATH", str(stub.parent))
    payload = run_smoke("bench_feature_extraction", tmp_path, "--device", "cpu", "--threads", "1",
                         "--sections", "torchaudio,device")
    torchaudio = [row for row in payload["results"] if row["name"] == "torchaudio kaldi.fbank per clip"]
    assert [(row["section"], row["batch"]) for row in torchaudio] == [("torchaudio", 4), ("device", 4), ("device", 8)]
    for row in torchaudio:
        assert row["status"] == "ok" and row["clips_per_s"] > 0
        # Ours removes each clip's mean first and torchaudio is given the clip minus its mean: equal up to rounding.
        assert row["max_abs_diff_vs_ours"] < 1e-4


def test_pretraining_step_smoke(tmp_path):
    payload = run_smoke("bench_pretraining_step", tmp_path)
    check_machine(payload)
    ours, plain = payload["results"]
    assert (ours["implementation"], plain["implementation"]) == ("EAT (ours)", "plain PyTorch")
    # The baseline is only a fair one if it does the same matmul and convolution work.
    assert ours["gflop_per_clip"] == pytest.approx(plain["gflop_per_clip"], rel=0.01)
    for row in (ours, plain):
        parts = [row[f"{part}_s"] for part in ("teacher_forward", "student_forward_backward",
                                                "decoder_forward_backward", "optimizer_and_ema")]
        # The parts are disjoint intervals of the step: what is left over ("other") cannot be negative.
        assert all(part > 0 for part in parts) and row["other_s"] >= -1e-3
        assert row["peak_mib"] > 0 and row["status"] == "ok"
    variants = payload["decoder_convolution"]
    assert [row["formulation"] for row in variants] == [
        "conv2d (NCHW)", "conv2d (channels_last)", "unfold + matmul", "unfold + matmul, recomputed in backward"
    ]
    assert all(row["max_abs_diff"] < 1e-4 for row in variants)


def test_pretraining_step_levers_smoke(tmp_path):
    # The GPU run measures levers on our step; each must train to the same loss as ours (bf16 autocast, as there).
    payload = run_smoke("bench_pretraining_step", tmp_path, "--dtype", "bf16", "--skip-decoder-variants",
                        "--variants", "ours,plain,ours-fused-adamw,ours-unfold-decoder,ours-unfold-decoder-recompute")
    assert payload["dtype"] == "bf16"
    rows = {row["implementation"]: row for row in payload["results"]}
    levers = ["ours-fused-adamw", "ours-unfold-decoder", "ours-unfold-decoder-recompute"]
    assert list(rows) == ["EAT (ours)", "plain PyTorch", *levers]
    assert all(row["status"] == "ok" and row["clips_per_s"] > 0 for row in rows.values())
    for lever in levers:
        assert rows[lever]["gflop_per_clip"] == pytest.approx(rows["EAT (ours)"]["gflop_per_clip"], rel=0.01)
        # bf16 keeps 8 bits of mantissa: 1e-3 of a loss of ~16 is a few of its rounding steps, a real change is more.
        assert rows[lever]["second_loss_diff_vs_ours"] <= 1e-3 * rows["EAT (ours)"]["second_loss"]


def test_scaling_smoke(tmp_path):
    payload = run_smoke("bench_scaling", tmp_path)
    check_machine(payload)
    one_second, two_seconds = payload["results"]
    # 1 s of audio = 98 fbank frames, cut to 96 = 6 patch rows of 8 patches, + CLS.
    assert (one_second["frames"], one_second["tokens"]) == (96, 49)
    assert (two_seconds["frames"], two_seconds["tokens"]) == (192, 97)
    assert one_second["peak_rss_mib"] > 0


def test_dataloader_smoke(tmp_path):
    payload = run_smoke("bench_dataloader", tmp_path)
    check_machine(payload)
    (loader,) = payload["results"]
    assert loader["workers"] == 0 and loader["batch_shape"] == [4, 96, 128]
    assert loader["clips_after_first"] == 4
    stages = payload["stages"]
    assert stages["workers_for_target"] >= 1 and stages["one_worker_clips_per_s"] > 0



def test_threads_smoke(tmp_path):
    # One competing process, started and ended by the script itself.
    payload = run_smoke("bench_threads", tmp_path, "--competing", "1", "--thread_counts", "1,2")
    check_machine(payload)
    assert [(row["competing"], row["threads"]) for row in payload["results"]] == [(1, 1), (1, 2)]
    assert all(row["s_per_step"] > 0 for row in payload["results"])
    assert payload["rule"]["num_threads"] >= 1 and "CPUs available" in payload["rule"]["reason"]
    assert payload["measured_busy_cpus"] >= 0 and payload["scripts"] == []


def test_run_gpu_script(tmp_path):
    # The GPU session has minutes to spend: its driver script is checked here, on its smallest part.
    script = BENCHMARKS / "run_gpu.sh"
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable, "RUN_GPU_EXTRA": "--smoke"}
    wrong = subprocess.run(["bash", str(script), "everything"], capture_output=True, text=True, env=env)
    assert wrong.returncode == 2 and "usage: bash benchmarks/run_gpu.sh inference|" in wrong.stderr
    completed = subprocess.run(["bash", str(script), "features"], capture_output=True, text=True, env=env,
                               timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert "== feature_extraction: exit 0" in completed.stdout
    payload = json.loads((tmp_path / "feature_extraction.json").read_text())
    assert payload["results"] and "--smoke" in payload["command"]
    assert (tmp_path / "feature_extraction.log").read_text() and (tmp_path / "versions.txt").read_text()


def test_long_audio_timeline_of_a_model_fine_tuned_with_our_script(tmp_path):
    # The CI-sized experiment: `training/finetune.py` trains a tiny EAT on 3 synthetic families, then the pipeline
    # tags a 1-minute file of known 15-25 s segments; the full run (7 families, 5 minutes) is in BENCHMARKS.md.
    payload = run_smoke("bench_long_audio", tmp_path, "--threads", "1", "--work_dir", str(tmp_path / "work"),
                        timeout=1200)
    check_machine(payload)
    timeline = next(row for row in payload["results"] if row["section"] == "timeline")
    assert timeline["windows"] >= 60 and timeline["segments"] >= 3
    assert timeline["window_accuracy"] >= 0.9
    scaling = [row for row in payload["results"] if row["section"] == "scaling"]
    assert [row["audio_min"] for row in scaling] == [0.25, 1.0]
    assert scaling[1]["windows"] > 3 * scaling[0]["windows"] and scaling[1]["peak_rss_mib"] > 0


def test_export_latency_smoke(tmp_path):
    payload = run_smoke("bench_export", tmp_path, "--threads", "1", "--kernels")
    check_machine(payload)
    rows = payload["results"]
    engines = ["eager PyTorch", "ONNX Runtime fp32", "ONNX Runtime int8 dynamic"]
    assert [(row["graph"], row["engine"]) for row in rows] == [
        *(("input_values -> logits", engine) for engine in [*engines, "ONNX Runtime int8 static"]),
        *(("waveform -> logits", engine) for engine in engines),
    ]
    assert all(row["median_ms"] > 0 for row in rows) and all(row["peak_mib"] > 0 for row in rows[:2])
    for row in rows:
        # fp32 graphs equal eager PyTorch; int8 ones differ, by little against logits of this size.
        limit = 1e-4 if "int8" not in row["engine"] else 0.1
        assert 0 <= row["max_abs_difference_vs_eager"] <= limit
        if "int8" in row["engine"]:
            assert row["max_abs_difference_vs_eager"] > 1e-6 and row["file_vs_fp32"] < 1
    assert payload["machine"]["onnxruntime"] and "int8_instructions" in payload["machine"]
    libraries = [row["library"] for row in payload["kernels"]]
    assert libraries[0] == "torch (MKL)" and libraries[2] == "ONNX Runtime (MLAS)" and len(libraries) == 3
    assert payload["kernels"][0]["vs_torch"] == 1.0 and all(row["gflops_best"] > 0 for row in payload["kernels"])


def test_harness_cost_smoke(tmp_path):
    payload = run_smoke("bench_harness", tmp_path, "--threads", "1")
    check_machine(payload)
    scene, native, fine = payload["results"]
    assert (scene["kind"], native["hop_ms"], fine["hop_ms"]) == ("scene", 160.0, 40.0)
    # 2 sounds of 15 s: one scene embedding each; 94 row centres each at 160 ms, four times as many less 3 at 40 ms.
    assert (scene["embeddings"], native["embeddings"], fine["embeddings"]) == (2, 188, 746)
    assert all(row["wall_s"] > 0 and row["peak_mib"] > 0 for row in payload["results"])


def test_harness_settings_smoke(tmp_path):
    payload = run_smoke("bench_harness_settings", tmp_path, "--threads", "1")
    check_machine(payload)
    # Every hidden state of the tiny model (embeddings + 3 blocks) on both data sets, every pooling and the frames.
    assert [(row["data"], row["layer"]) for row in payload["layers"]] == [
        (data, layer) for data in ("fsdd", "synthetic") for layer in range(4)
    ]
    assert all(0 <= row[key] <= 1 for row in payload["layers"] for key in ("cls", "mean", "cls+mean", "frames"))
    assert [row["method"] for row in payload["hop"]] == ["native_nearest", "native_interpolated", "fine_passes"]
    assert all(0 <= row["boundary_accuracy"] <= 1 for row in payload["hop"])
    # One model, so the summaries over seeds hold one seed each, and the last layer's CLS differs from itself by 0.
    assert len(payload["layer_summary"]) == 8 and len(payload["hop_summary"]) == 3
    assert payload["layer_summary"][3]["cls vs last cls"] == "0.000 ± 0.000"
