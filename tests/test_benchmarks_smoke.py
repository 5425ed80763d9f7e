"""Each benchmark script runs end to end at its `--smoke` sizes and writes the JSON it promises.

No timing is asserted (the figures depend on the machine); what is checked is that the scripts measure what they
say: both models in the same run, the plain pre-training step doing the same arithmetic as ours, the alternative
decoder convolution agreeing with `nn.Conv2d`, the loader's batches having the collator's shape.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_smoke(script: str, tmp_path: Path, *extra: str) -> dict:
    output = tmp_path / f"{script}.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{script}.py"), "--smoke", "--json", str(output), *extra],
        capture_output=True, text=True, env=env, timeout=300,
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
    payload = run_smoke("bench_inference", tmp_path)
    check_machine(payload)
    rows = payload["results"]
    throughput = [row for row in rows if row["section"] == "throughput" and row["status"] == "ok"]
    # Both models, both portable attention implementations, and the ratio on EAT's rows.
    assert {(row["model"], row["attention"]) for row in throughput} == {
        ("EAT", "eager"), ("AST", "eager"), ("EAT", "sdpa"), ("AST", "sdpa")
    }
    assert all(row["clips_per_s"] > 0 for row in throughput)
    assert all("EAT/AST clips/s" in row for row in throughput if row["model"] == "EAT")
    flash = [row for row in rows if row.get("attention") == "flash_attention_2"]
    assert len(flash) == 2 and all(row["status"] == "ok" or row["status"].startswith("not run: ") for row in flash)
    latency = [row for row in rows if row["section"] == "latency"]
    assert [row["model"] for row in latency] == ["EAT", "AST"] and latency[0]["threads"] == 2
    (compiled,) = [row for row in rows if row["section"] == "compile"]
    # The plain forward compiles to one graph; hidden states break it only on the call that installs the hooks.
    assert compiled["explain"] == {"graphs": 1, "graph_breaks": 0, "break_reasons": []}
    assert compiled["explain_output_hidden_states_first_call"]["graph_breaks"] == 1
    assert compiled["explain_output_hidden_states_later_calls"]["graph_breaks"] == 0
    assert {row["dtype"] for row in payload["matmul_probe"]} == {"fp32", "bf16"}
    eat_flops, ast_flops = [row for row in rows if row["section"] == "flops"]
    # Same width and depth at the smoke sizes, so the FLOPs ratio is the token ratio: 64 + 1 against AST's
    # 12 x 12 overlapping patches + 2 on 128 frames.
    assert eat_flops["EAT/AST flops"] < 0.6 and ast_flops["gflop_per_clip"] > eat_flops["gflop_per_clip"]


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
        assert row["peak_rss_mib"] > 0
    variants = payload["decoder_convolution"]
    assert [row["formulation"] for row in variants] == ["conv2d (NCHW)", "conv2d (channels_last)", "unfold + matmul"]
    assert all(row["max_abs_diff"] < 1e-4 for row in variants)


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

