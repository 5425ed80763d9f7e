"""The settings of the evaluation harnesses' embeddings (`modeling_eat.hear`, `modeling_eat.xares`), measured.

Section "layers": for each model folder, a logistic-regression probe (the package's `linear_probe`: standardized
features, C = 1) per hidden state (0 = the patch embeddings, i = block i) on
- scene embeddings, pooled as `EATEmbedder.scene_embeddings` pools them (`cls`, `mean`, `cls+mean`), one per clip;
- frame rows (what timestamp embeddings are), each labelled with its clip's label (`frames`);
trained on a data set's train split and scored on its test split. Two data sets: FSDD (the test split is the unseen
speaker) and the quickstart's synthetic sound families (generated here).

Section "hop": what a timestamp hop finer than EAT's 160 ms patch row is worth. Scenes of synthetic events (one
event of a random family in each 2 s slot, at a random time; label "none" between events) are embedded at the
native hop and at `--fine_hop_ms` (real encodings of shifted audio, `EATEmbedder`'s passes); a per-timestamp probe
is scored at every point of the fine grid, for three ways of getting there from the same model:
- `native_nearest`: the native embeddings, each fine point taking the prediction of the nearest native timestamp;
- `native_interpolated`: the native embeddings linearly interpolated onto the fine grid (no new encoding);
- `fine_passes`: the fine hop's own embeddings.
`accuracy` counts every fine point, `boundary_accuracy` only those within 80 ms of an event's onset or offset, where
the time resolution decides. The embedding time of each hop is reported beside it.

    python benchmarks/bench_harness_settings.py --models RUN/eat/seed_0/pretrained ... --json harness_settings.json
    python benchmarks/bench_harness_settings.py --smoke --json smoke.json      # a tiny random model, a few clips
"""

import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from modeling_eat.synthetic_audio import SYNTHETIC_LABELS, synthesize_clip, write_audiofolder

from common import REPO_ROOT, apply_threads, benchmark_parser, machine_info, print_table, write_json


SAMPLING_RATE = 16000
FULL = {"fsdd": str(REPO_ROOT.parent / "shared" / "data" / "fsdd"), "synthetic_train_per_class": 100,
        "synthetic_test_per_class": 40, "max_clips": None, "scene_seconds": 10.0, "slot_seconds": 2.0,
        "train_scenes": 60, "test_scenes": 30}
SMOKE = {"fsdd": str(REPO_ROOT.parent / "shared" / "data" / "fsdd"), "synthetic_train_per_class": 4,
         "synthetic_test_per_class": 2, "max_clips": 30, "scene_seconds": 4.0, "slot_seconds": 2.0,
         "train_scenes": 4, "test_scenes": 2}
BOUNDARY_MS = 80.0


def load_split(dataset: str, split: str, max_clips: int | None, sampling_rate: int):
    from modeling_eat.audio import load_audio_dataset
    from modeling_eat.inference.sources import decoded_clips

    data = load_audio_dataset(dataset, split=split, label_column_name="label")
    if max_clips is not None:
        # Every label among the first clips: shuffled with a fixed seed before cutting.
        data = data.shuffle(seed=0).select(range(min(max_clips, len(data))))
    return list(decoded_clips(data["audio"], sampling_rate)), list(data["label"])


def layer_rows(model_name: str, datasets: dict, settings: dict) -> list[dict]:
    """Probe accuracy per data set, hidden state and pooling for one model folder."""
    from modeling_eat.audio import load_feature_extractor
    from modeling_eat.inference.features import iter_features, load_encoder
    from modeling_eat.inference.probe import POOLINGS, linear_probe, pooled_features

    model = load_encoder(model_name, device="cpu")
    feature_extractor = load_feature_extractor(None, model_name)
    rows = []
    for data_name, data_dir in datasets.items():
        splits = {split: load_split(data_dir, split, settings["max_clips"], feature_extractor.sampling_rate)
                  for split in ("train", "test")}
        for layer in range(model.config.num_hidden_layers + 1):
            features = {
                split: list(iter_features(model, feature_extractor, clips, layer=layer, always_window=True))
                for split, (clips, _) in splits.items()
            }
            labels = {split: labels for split, (_, labels) in splits.items()}
            row = {"model": model_name, "data": data_name, "layer": layer}
            for pooling in POOLINGS:
                row[pooling] = linear_probe(
                    pooled_features(features["train"], pooling), labels["train"],
                    pooled_features(features["test"], pooling), labels["test"],
                )["accuracy"]
            frame_sets = {
                split: (np.concatenate([clip.frame_embeddings for clip in features[split]]),
                        [label for clip, label in zip(features[split], labels[split])
                         for _ in range(len(clip.frame_embeddings))])
                for split in features
            }
            row["frames"] = linear_probe(*frame_sets["train"], *frame_sets["test"])["accuracy"]
            rows.append(row)
            print(row, flush=True)
    return rows


def make_scene(rng: np.random.Generator, settings: dict) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """A scene of `scene_seconds`: a quiet noise floor and, in each slot, one 1 s synthetic clip at a random time;
    returns the audio and its events `(onset_ms, offset_ms, label)`."""
    num_samples = int(settings["scene_seconds"] * SAMPLING_RATE)
    slot = int(settings["slot_seconds"] * SAMPLING_RATE)
    audio = (1e-3 * rng.standard_normal(num_samples)).astype(np.float32)
    events = []
    for slot_start in range(0, num_samples - slot + 1, slot):
        label = SYNTHETIC_LABELS[rng.integers(len(SYNTHETIC_LABELS))]
        clip, info = synthesize_clip(label, rng)
        start = slot_start + int(rng.integers(0, slot - len(clip) + 1))
        audio[start : start + len(clip)] += clip
        onset = start + info["onset"]
        events.append((1000 * onset / SAMPLING_RATE, 1000 * (onset + info["length"]) / SAMPLING_RATE, label))
    return np.clip(audio, -1, 1), events


def labels_at(times_ms: np.ndarray, events) -> list[str]:
    labels = np.full(len(times_ms), "none", dtype=object)
    for onset, offset, label in events:
        labels[(times_ms >= onset) & (times_ms < offset)] = label
    return labels.tolist()


def near_boundary(times_ms: np.ndarray, events) -> np.ndarray:
    edges = np.array([edge for onset, offset, _ in events for edge in (onset, offset)])
    return np.abs(times_ms[:, None] - edges[None, :]).min(axis=1) <= BOUNDARY_MS


def hop_rows(model_name: str, settings: dict, fine_hop_ms: float) -> list[dict]:
    """Per-timestamp probe accuracy on the fine grid, native hop (nearest, interpolated) against the fine hop."""
    from modeling_eat.inference.embeddings import load_embedder
    from modeling_eat.inference.probe import linear_probe

    rng = np.random.default_rng(0)
    scenes = {split: [make_scene(rng, settings) for _ in range(settings[f"{split}_scenes"])]
              for split in ("train", "test")}
    embedded, seconds = {}, {}
    for hop in (160.0, fine_hop_ms):
        embedder = load_embedder(model_name, device="cpu", timestamp_hop_ms=hop)
        start = time.perf_counter()
        for split, items in scenes.items():
            audio = torch.from_numpy(np.stack([scene for scene, _ in items]))
            embeddings, timestamps = embedder.timestamp_embeddings(audio)
            embedded[hop, split] = (embeddings.numpy(), timestamps[0].numpy().astype(np.float64))
        seconds[hop] = time.perf_counter() - start
    fine_times = embedded[fine_hop_ms, "test"][1]
    native_times = embedded[160.0, "test"][1]

    def interpolated(embeddings, times):
        return np.stack([np.stack([np.interp(fine_times, times, scene[:, dim]) for dim in range(scene.shape[1])], 1)
                         for scene in embeddings])

    def flat(split, embeddings, times):
        events = [events for _, events in scenes[split]]
        features = np.concatenate(list(embeddings))
        labels = [label for scene_events in events for label in labels_at(times, scene_events)]
        return features, labels

    test_events = [events for _, events in scenes["test"]]
    fine_labels = np.array([label for events in test_events for label in labels_at(fine_times, events)], dtype=object)
    boundary = np.concatenate([near_boundary(fine_times, events) for events in test_events])
    predictions = {}
    probe = linear_probe(*flat("train", *embedded[160.0, "train"]), *flat("test", *embedded[160.0, "test"]))
    nearest = np.abs(fine_times[:, None] - native_times[None, :]).argmin(axis=1)
    native_predictions = probe["predictions"].reshape(len(test_events), len(native_times))
    predictions["native_nearest"] = native_predictions[:, nearest].reshape(-1)
    train_native = embedded[160.0, "train"]
    probe = linear_probe(
        *flat("train", interpolated(*train_native), fine_times),
        *flat("test", interpolated(*embedded[160.0, "test"]), fine_times),
    )
    predictions["native_interpolated"] = probe["predictions"]
    probe = linear_probe(
        *flat("train", *embedded[fine_hop_ms, "train"]), *flat("test", *embedded[fine_hop_ms, "test"])
    )
    predictions["fine_passes"] = probe["predictions"]
    rows = []
    for method, predicted in predictions.items():
        correct = np.asarray(predicted, dtype=object) == fine_labels
        rows.append({
            "model": model_name, "method": method,
            "accuracy": float(correct.mean()), "boundary_accuracy": float(correct[boundary].mean()),
            "embedding_s": seconds[fine_hop_ms if method == "fine_passes" else 160.0],
        })
        print(rows[-1], flush=True)
    return rows


def seed_group(model: str) -> str:
    """Models that differ only in their seed (`.../seed_N/...`) form one group."""
    return re.sub(r"seed_\d+", "seed_*", model)


def mean_std(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3f} ± {values.std(ddof=1) if len(values) > 1 else 0.0:.3f}"


def summarize_layers(rows: list[dict]) -> list[dict]:
    """Mean ± std over each seed group, per data set, layer and pooling; `vs last cls` is the paired difference to
    the last layer's CLS of the same model (the official feature extraction's choice)."""
    summary = []
    last_layer = max(row["layer"] for row in rows)
    keys = sorted({(seed_group(row["model"]), row["data"], row["layer"]) for row in rows})
    for group, data, layer in keys:
        members = [row for row in rows
                   if (seed_group(row["model"]), row["data"], row["layer"]) == (group, data, layer)]
        reference = {row["model"]: row for row in rows if row["data"] == data and row["layer"] == last_layer}
        line = {"group": group, "data": data, "layer": layer, "seeds": len(members)}
        for pooling in ("cls", "mean", "cls+mean", "frames"):
            line[pooling] = mean_std([row[pooling] for row in members])
            base = "frames" if pooling == "frames" else "cls"
            differences = [row[pooling] - reference[row["model"]][base] for row in members]
            line[f"{pooling} vs last {base}"] = mean_std(differences)
        summary.append(line)
    return summary


def summarize_hop(rows: list[dict]) -> list[dict]:
    """Mean ± std over each seed group per method; `vs nearest` is the paired difference in boundary accuracy."""
    summary = []
    for group in sorted({seed_group(row["model"]) for row in rows}):
        nearest = {row["model"]: row for row in rows if seed_group(row["model"]) == group
                   and row["method"] == "native_nearest"}
        for method in ("native_nearest", "native_interpolated", "fine_passes"):
            members = [row for row in rows if seed_group(row["model"]) == group and row["method"] == method]
            summary.append({
                "group": group, "method": method, "seeds": len(members),
                "accuracy": mean_std([row["accuracy"] for row in members]),
                "boundary_accuracy": mean_std([row["boundary_accuracy"] for row in members]),
                "boundary vs nearest": mean_std([row["boundary_accuracy"] - nearest[row["model"]]["boundary_accuracy"]
                                                 for row in members]),
                "embedding_s": mean_std([row["embedding_s"] for row in members]),
            })
    return summary


def print_summaries(layers: list[dict], hops: list[dict]) -> tuple[list[dict], list[dict]]:
    layer_summary = summarize_layers(layers) if layers else []
    hop_summary = summarize_hop(hops) if hops else []
    for summary in (layer_summary, hop_summary):
        if summary:
            print_table(summary, list(summary[0]), "over seeds: mean ± std")
    return layer_summary, hop_summary


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--models", nargs="*", default=[], help="EAT folders to measure")
    parser.add_argument("--sections", nargs="+", default=["layers", "hop"], choices=["layers", "hop"])
    parser.add_argument("--fine_hop_ms", type=float, default=40.0)
    parser.add_argument("--datasets", nargs="+", default=["fsdd", "synthetic"], choices=["fsdd", "synthetic"])
    parser.add_argument("--summarize", type=Path, default=None,
                        help="only print the summaries of the rows of this earlier --json")
    args = parser.parse_args()
    if args.summarize:
        payload = json.loads(args.summarize.read_text())
        print_summaries(payload["layers"], payload["hop"])
        return
    threads = apply_threads(args.threads)
    machine = machine_info()
    # scikit-learn's BLAS too: one thread per core (its default), on cores other jobs hold, made probes 20x slower.
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    settings = SMOKE if args.smoke else FULL
    with tempfile.TemporaryDirectory() as scratch:
        models = list(args.models)
        if args.smoke and not models:
            from common import save_random_encoder

            models = [save_random_encoder(Path(scratch) / "tiny", "tiny")]
        datasets = {}
        if "fsdd" in args.datasets:
            datasets["fsdd"] = settings["fsdd"]
        if "synthetic" in args.datasets:
            datasets["synthetic"] = str(write_audiofolder(
                Path(scratch) / "synthetic", settings["synthetic_train_per_class"],
                settings["synthetic_test_per_class"], seed=0,
            ))
        layers, hops = [], []
        for model in models:
            if "layers" in args.sections:
                layers += layer_rows(str(model), datasets, settings)
            if "hop" in args.sections:
                hops += hop_rows(str(model), settings, args.fine_hop_ms)
    print_table(layers, ["model", "data", "layer", "cls", "mean", "cls+mean", "frames"], "probe accuracy per layer")
    print_table(hops, ["model", "method", "accuracy", "boundary_accuracy", "embedding_s"],
                f"per-timestamp probe on a {args.fine_hop_ms:g} ms grid")
    layer_summary, hop_summary = print_summaries(layers, hops)
    write_json(args.json, machine, {**settings, "fine_hop_ms": args.fine_hop_ms, "models": models},
               layers + hops, layers=layers, hop=hops, layer_summary=layer_summary, hop_summary=hop_summary)


if __name__ == "__main__":
    main()
