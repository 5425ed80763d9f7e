# Copyright 2026 The modeling_eat authors.
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may not use this file except in compliance with
# the License. You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software distributed under the License is distributed on
# an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the License for the
# specific language governing permissions and limitations under the License.
"""`pipeline("audio-classification")` for EAT, on audio of any length.

Audio up to the model's window (the feature extractor's `max_length` frames) is classified as transformers' own
pipeline does it. Longer audio is read in pieces (`windowing_eat`) and, with `chunk_length_s`, classified window by
window: overlapping windows in batches, per-window softmax or sigmoid scores, clip scores by mean or max over the
windows, and on request a timeline. Without `chunk_length_s` only the first window is classified, with a warning.

Shipped with saved folders and named in their config's `custom_pipelines`, so `pipeline(..., trust_remote_code=True)`
builds it where the modeling_eat package is not installed; importing the package registers it for the task.
"""

import sys

import numpy as np
import torch
from transformers import AutoModelForAudioClassification
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.audio_classification import AudioClassificationPipeline
from transformers.pipelines.base import ChunkPipeline
from transformers.utils import logging

from .audio_io_eat import array_blocks, ffmpeg_blocks, ffprobe_num_samples, resample
from .configuration_eat import EATConfig
from .feature_extraction_eat import frames_to_seconds, seconds_to_frames, seconds_to_patch_frames
from .windowing_eat import count_windows, iter_windows, window_hop_frames


logger = logging.get_logger(__name__)

AGGREGATIONS = ("mean", "max")
# A bar for files of more windows than this, unless asked for or against.
PROGRESS_BAR_MIN_WINDOWS = 32
# Windows per forward pass unless `batch_size` says otherwise.
DEFAULT_BATCH_SIZE = 8
LONG_AUDIO_OPTIONS = (
    "pass chunk_length_s= (the window length in seconds), with stride_length_s= (the overlap of windows), "
    "aggregation='mean'|'max' (clip scores from the windows') and return_timeline=True (scores per window)"
)


def moving_average_over_time(scores: torch.Tensor, spans: list[tuple[float, float]], width_s: float) -> torch.Tensor:
    """Each row of `scores` (one per window, in time order) averaged with the rows whose span centres lie within
    `width_s / 2` of its own; in memory linear in the number of windows, for files of any length."""
    centres = torch.tensor([(start + end) / 2 for start, end in spans], dtype=torch.float64)
    # A hair of slack: a neighbour exactly at the edge stays in despite the rounding of the spans.
    half = width_s / 2 + 1e-6
    first = torch.searchsorted(centres, centres - half, side="left")
    last = torch.searchsorted(centres, centres + half, side="right")
    cumulative = torch.cat([scores.new_zeros(1, scores.shape[1], dtype=torch.float64), scores.double().cumsum(0)])
    return ((cumulative[last] - cumulative[first]) / (last - first)[:, None]).to(scores.dtype)


class EATAudioClassificationPipeline(ChunkPipeline):
    """
    Audio classification with an EAT model, for clips and for long recordings.

    The model is an `EATForAudioClassification`, or an exported graph standing in for one (`ExportedEATClassifier`
    of `modeling_eat.deployment.graph_model`, fp32 or int8): only the forward pass then runs in ONNX Runtime.

    Inputs are those of transformers' `AudioClassificationPipeline`: a file path or URL (decoded by FFmpeg as a
    stream), the bytes of a file, a 1-D numpy array or tensor at the feature extractor's rate, or a dict with
    `"array"` (or `"raw"`) and `"sampling_rate"` (other rates are resampled here, without torchaudio).

    Call arguments (also accepted by `pipeline(...)`):
        top_k (`int`, *optional*, defaults to 5): labels returned per clip and per timeline segment; None for all.
        function_to_apply (`str`, *optional*): "softmax", "sigmoid" or "none"; by default sigmoid for multi-label
            models, none for regression, softmax otherwise. Applied to each window.
        chunk_length_s (`float`, *optional*): window length in seconds (rounded down to whole 16-frame patch rows,
            at most the model's positional table). Unset: one window of the feature extractor's `max_length`,
            and audio past it is not classified (a warning says so).
        stride_length_s (`float` or `(float, float)`, *optional*): audio each window shares with the previous and
            the next one (left, right); defaults to `chunk_length_s / 6` on each side, as in transformers' ASR
            chunking. A window owns the span between its strides (the first from 0, the last to the end).
        aggregation (`str`, *optional*, defaults to "mean"): clip scores from the windows' scores: "mean" (weighted
            by each window's owned duration) or "max".
        return_timeline (`bool`, *optional*, defaults to False): also return, per window, its owned span and labels.
        timeline_smoothing_s (`float`, *optional*): with `return_timeline=True`, each window's timeline scores are
            the mean of the scores of the windows whose centres lie within `timeline_smoothing_s / 2` seconds of its
            own (a moving average, the usual post-processing of sound-event detection: a lone window that disagrees
            with its neighbours is outvoted). Choose it shorter than the shortest event to be found. Clip scores
            are not smoothed.
        progress_bar (`bool`, *optional*): a progress bar over the windows; by default shown for audio of more than
            32 windows whose length is known up front.
        batch_size (`int`, *optional*, defaults to 8): windows per forward pass.

    Returns:
        A list of `{"label", "score"}` (best first) for the clip; with `return_timeline=True` a dict with those
        under `"labels"` and `"timeline"`: a list of `{"start", "end", "labels"}` (seconds, and the window's
        labels), one per window, in order, spans tiling the audio.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __new__(cls, *args, **kwargs):
        # The task's class for every model once registered (`register_eat_pipeline`): others keep transformers' own.
        model = kwargs.get("model", args[0] if args else None)
        if model is not None and getattr(getattr(model, "config", None), "model_type", None) != "eat":
            return AudioClassificationPipeline(*args, **kwargs)
        return super().__new__(cls)

    def __init__(self, *args, **kwargs):
        if "top_k" not in kwargs:
            kwargs["top_k"] = 5
        kwargs.setdefault("batch_size", DEFAULT_BATCH_SIZE)
        super().__init__(*args, **kwargs)

    def __call__(self, inputs, **kwargs):
        """Classifies one input or a list of them; see the class docstring for the arguments and the output."""
        return super().__call__(inputs, **kwargs)

    def _sanitize_parameters(
        self,
        top_k=None,
        function_to_apply=None,
        chunk_length_s=None,
        stride_length_s=None,
        aggregation=None,
        return_timeline=None,
        timeline_smoothing_s=None,
        progress_bar=None,
        **kwargs,
    ):
        preprocess_params, postprocess_params = {}, {}
        num_labels = self.model.config.num_labels
        postprocess_params["top_k"] = num_labels if top_k is None else min(top_k, num_labels)
        if function_to_apply is not None:
            if function_to_apply not in ("softmax", "sigmoid", "none"):
                raise ValueError(
                    f"Invalid value for `function_to_apply`: {function_to_apply}. Valid options are ['softmax', "
                    "'sigmoid', 'none']"
                )
            postprocess_params["function_to_apply"] = function_to_apply
        if aggregation is not None:
            if aggregation not in AGGREGATIONS:
                raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
            postprocess_params["aggregation"] = aggregation
        if return_timeline is not None:
            postprocess_params["return_timeline"] = bool(return_timeline)
        if timeline_smoothing_s is not None:
            if not return_timeline:
                raise ValueError("timeline_smoothing_s smooths the timeline's scores: pass return_timeline=True too")
            if not timeline_smoothing_s >= 0:
                raise ValueError(f"timeline_smoothing_s must be seconds >= 0, got {timeline_smoothing_s!r}")
            postprocess_params["timeline_smoothing_s"] = float(timeline_smoothing_s)
        if chunk_length_s is not None:
            preprocess_params["chunk_length_s"] = chunk_length_s
        if stride_length_s is not None:
            preprocess_params["stride_length_s"] = stride_length_s
        if progress_bar is not None:
            preprocess_params["progress_bar"] = progress_bar
        if kwargs:
            raise TypeError(f"{type(self).__name__} got unexpected arguments {sorted(kwargs)}")
        return preprocess_params, {}, postprocess_params

    def window_geometry(self, chunk_length_s=None, stride_length_s=None) -> tuple[int, int, int]:
        """(window, left stride, right stride) in fbank frames for these arguments; see the class docstring."""
        config = self.model.config
        if chunk_length_s is None:
            if stride_length_s is not None:
                raise ValueError("stride_length_s needs chunk_length_s: pass the window length too")
            return int(self.feature_extractor.max_length), 0, 0
        patch_size, max_frames = config.patch_size, config.max_input_frames
        window_frames = seconds_to_patch_frames(chunk_length_s, patch_size)
        if not patch_size <= window_frames <= max_frames:
            raise ValueError(
                f"chunk_length_s={chunk_length_s} gives {window_frames} frames; it must lie between one patch row "
                f"({patch_size} frames, {frames_to_seconds(patch_size)} s) and the model's positional table "
                f"({max_frames} frames, {frames_to_seconds(max_frames)} s)."
            )
        if stride_length_s is None:
            stride_length_s = chunk_length_s / 6
        left, right = stride_length_s if isinstance(stride_length_s, (list, tuple)) else (stride_length_s,) * 2
        if not (left >= 0 and right >= 0):
            raise ValueError(f"stride_length_s must be >= 0 seconds, got {stride_length_s!r}")
        left_frames, right_frames = seconds_to_frames(left), seconds_to_frames(right)
        window_hop_frames(window_frames, left_frames, right_frames)
        return window_frames, left_frames, right_frames

    def preprocess(self, inputs, chunk_length_s=None, stride_length_s=None, progress_bar=None):
        sampling_rate = self.feature_extractor.sampling_rate
        window_frames, left, right = self.window_geometry(chunk_length_s, stride_length_s)
        hop = window_hop_frames(window_frames, left, right)
        chunked = chunk_length_s is not None
        # The length only sizes the progress bar: a file is probed (a second FFmpeg process) only when one may show.
        wants_length = progress_bar or (progress_bar is None and chunked)
        blocks, num_samples = self._audio_blocks(inputs, sampling_rate, wants_length)
        num_windows = count_windows(num_samples, window_frames, hop, sampling_rate) if num_samples else None
        if progress_bar is None:
            progress_bar = chunked and num_windows is not None and num_windows > PROGRESS_BAR_MIN_WINDOWS
        bar = logging.tqdm(total=num_windows, unit="window", desc="classifying") if progress_bar else None
        try:
            windows = iter_windows(blocks, window_frames, hop, sampling_rate, max_windows=None if chunked else 1)
            for window, samples in windows:
                if not chunked and not window.is_last:
                    window_seconds = frames_to_seconds(window_frames)
                    logger.warning(
                        f"The audio is longer than the model's window ({window_seconds:.2f} s): only its first "
                        f"{window_seconds:.2f} s are classified. To classify all of it, {LONG_AUDIO_OPTIONS}."
                    )
                is_last = window.is_last or not chunked
                start = 0.0 if window.index == 0 else frames_to_seconds(window.start_frame + left)
                end = (
                    (window.start_sample + len(samples)) / sampling_rate
                    if is_last
                    else frames_to_seconds(window.start_frame + window_frames - right)
                )
                features = self.feature_extractor(
                    samples, sampling_rate=sampling_rate, max_length=window_frames, return_tensors="pt"
                )
                if self.dtype is not None:
                    features = features.to(dtype=self.dtype)
                if bar is not None:
                    bar.update(1)
                yield {"input_values": features["input_values"], "is_last": is_last, "span": (start, end)}
        finally:
            if bar is not None:
                bar.close()

    def _audio_blocks(self, inputs, sampling_rate: int, wants_length: bool = True):
        """The input as a stream of float blocks at `sampling_rate`, and its length in samples when known (for a
        file, when `wants_length`)."""
        if isinstance(inputs, str):
            num_samples = ffprobe_num_samples(inputs, sampling_rate) if wants_length else None
            return ffmpeg_blocks(inputs, sampling_rate), num_samples
        if isinstance(inputs, bytes):
            return ffmpeg_blocks(inputs, sampling_rate), None
        # An `AudioDecoder` input means torchcodec is already imported; it is decoded whole, as transformers does.
        torchcodec = sys.modules.get("torchcodec")
        if torchcodec is not None and isinstance(inputs, torchcodec.decoders.AudioDecoder):
            decoded = inputs.get_all_samples()
            inputs = {"array": decoded.data.mean(dim=0), "sampling_rate": decoded.sample_rate}
        input_rate = sampling_rate
        if isinstance(inputs, dict):
            if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
                raise ValueError(
                    "When passing a dictionary to the audio-classification pipeline, it needs a \"raw\" or \"array\" "
                    "key holding the waveform and a \"sampling_rate\" key holding its rate."
                )
            input_rate = int(inputs["sampling_rate"])
            inputs = inputs["raw"] if "raw" in inputs else inputs["array"]
        if isinstance(inputs, torch.Tensor):
            inputs = inputs.detach().cpu().numpy()
        if not isinstance(inputs, np.ndarray):
            raise TypeError(
                f"Expected a file path, the bytes of a file, a numpy array, a tensor or a dict, got {type(inputs)}"
            )
        if inputs.ndim != 1:
            raise ValueError(
                f"Expected 1-D mono audio, got an array of shape {inputs.shape}: down-mix it first (e.g. "
                "`audio.mean(axis=...)` over the channel axis)."
            )
        if input_rate != sampling_rate:
            if inputs.dtype == np.int16:
                inputs = inputs.astype(np.float32) / 32768.0
            waveform = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
            inputs = resample(waveform, input_rate, sampling_rate).numpy()
        return array_blocks(inputs), len(inputs)

    def _forward(self, model_inputs):
        is_last, span = model_inputs.pop("is_last"), model_inputs.pop("span")
        logits = self.model(**model_inputs).logits
        return {"logits": logits, "is_last": is_last, "span": span}

    def postprocess(
        self,
        model_outputs,
        top_k=5,
        function_to_apply=None,
        aggregation="mean",
        return_timeline=False,
        timeline_smoothing_s=0.0,
    ):
        if function_to_apply is None:
            problem_type = self.model.config.problem_type
            function_to_apply = {"regression": "none", "multi_label_classification": "sigmoid"}.get(
                problem_type, "softmax"
            )
        logits = torch.cat([output["logits"] for output in model_outputs]).float()
        if function_to_apply == "softmax":
            scores = logits.softmax(-1)
        elif function_to_apply == "sigmoid":
            scores = logits.sigmoid()
        else:
            scores = logits
        spans = [output["span"] for output in model_outputs]
        if aggregation == "max":
            clip_scores = scores.max(dim=0).values
        else:
            durations = torch.tensor([max(end - start, 0.0) for start, end in spans], dtype=scores.dtype)
            weights = durations if float(durations.sum()) > 0 else torch.ones_like(durations)
            clip_scores = (scores * weights[:, None]).sum(0) / weights.sum()
        labels = self._top_labels(clip_scores, top_k)
        if not return_timeline:
            return labels
        if timeline_smoothing_s > 0:
            scores = moving_average_over_time(scores, spans, timeline_smoothing_s)
        timeline = [
            {"start": round(start, 6), "end": round(end, 6), "labels": self._top_labels(window_scores, top_k)}
            for (start, end), window_scores in zip(spans, scores)
        ]
        return {"labels": labels, "timeline": timeline}

    def _top_labels(self, scores: torch.Tensor, top_k: int) -> list[dict]:
        values, ids = scores.topk(top_k)
        return [
            {"score": score, "label": self.model.config.id2label[index]}
            for score, index in zip(values.tolist(), ids.tolist())
        ]



def register_eat_pipeline() -> None:
    """Makes `pipeline("audio-classification", model=...)` build `EATAudioClassificationPipeline` for EAT models in
    this process; `import modeling_eat` calls it.

    transformers keys its pipelines by task, not by model, so EAT's class becomes the task's, and its `__new__` hands
    every other model to transformers' `AudioClassificationPipeline` untouched; the task's default model stays
    transformers'. transformers warns when a task's pipeline is replaced, which would be wrong here for that reason:
    its pipelines logger is held at ERROR for this call only. EAT configs created afterwards leave the folder's own
    copy of the pipeline out of what transformers reads (`EATConfig.pipeline_registered`), which it would otherwise
    insist on running with `trust_remote_code=True`.
    """
    pipelines_logger = logging.get_logger("transformers.pipelines.base")
    level = pipelines_logger.level
    pipelines_logger.setLevel(logging.ERROR)
    try:
        PIPELINE_REGISTRY.register_pipeline(
            "audio-classification",
            pipeline_class=EATAudioClassificationPipeline,
            pt_model=AutoModelForAudioClassification,
            default=PIPELINE_REGISTRY.supported_tasks["audio-classification"].get("default"),
            type="audio",
        )
    finally:
        pipelines_logger.setLevel(level)
    EATConfig.pipeline_registered = True

__all__ = ["EATAudioClassificationPipeline", "moving_average_over_time", "register_eat_pipeline"]
