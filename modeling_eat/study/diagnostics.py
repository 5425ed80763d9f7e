"""Why the study's rows come out as they do, measured on a pre-training gradient: how much of its noise comes from the
masks (what more clones per clip average away) and how much from the clips (`agreement`), and how much of the step
each term of the loss makes (`shares`).

    python -m modeling_eat.study.diagnostics --model_name_or_path PRETRAINED --dataset_name DATA --output_json f.json \
        [--measure agreement shares]

For a model and batches of pre-training clips, the student's gradient is computed under independent mask draws of
the same clips and under different clips, with 1 clone per clip and with the model's clone count; the cosine
similarity between two such gradients is near 1 when the noise that varies between them is small against what they
share. If two draws of masks already agree far more than two batches of clips do, averaging more masks per clip
removes little of a step's noise, and more clones cannot buy much at a fixed number of updates.

The step is the gradient of `frame_loss + utterance_loss_weight * utterance_loss`; the official utterance loss is a
sum over the batch's `batch_size * clones` rows, so its weight in the step grows with them. A term's share of the
step is its gradient's projection on the whole gradient, over the whole gradient's squared norm: the two shares add
up to 1. They are given for the official sum and, from the same gradients, for the mean over the rows.
"""

import argparse
import copy
import json
import statistics
from collections.abc import Sequence
from itertools import combinations

import torch

from ..audio import crop_num_frames, load_audio_dataset, load_feature_extractor
from ..masking_eat import EATMaskGenerator
from ..modeling_eat import EATForPreTraining
from ..pretraining.data import EATPretrainingCollator, PretrainingAudioDataset


def student_gradient(
    model: EATForPreTraining, batch: dict, bool_masked_pos: torch.Tensor, seed: int, term: str = "loss"
) -> torch.Tensor:
    """The flattened gradient over the student's weights of the pre-training loss, or of one of its terms
    (`frame_loss`, `utterance_loss`)."""
    model.zero_grad()
    generator = torch.Generator().manual_seed(seed)
    getattr(model(batch["input_values"], bool_masked_pos=bool_masked_pos, generator=generator), term).backward()
    return torch.cat([parameter.grad.flatten() for parameter in model.eat.parameters() if parameter.grad is not None])


def mean_pairwise_cosine(gradients: list[torch.Tensor]) -> float:
    pairs = combinations(gradients, 2)
    return statistics.fmean(float(torch.nn.functional.cosine_similarity(a, b, dim=0)) for a, b in pairs)


def gradient_agreement(
    model: EATForPreTraining,
    batches: Sequence[dict],
    clone_counts: Sequence[int],
    draws: int = 4,
    terms: Sequence[str] = ("loss", "frame_loss", "utterance_loss"),
) -> dict[str, dict[str, dict[str, float]]]:
    """Per loss term and clone count: the mean cosine between gradients of the first batch under `draws`
    independent mask draws (`masks`), between gradients of different batches (`clips`), and their mean `norm`."""
    model.train()
    config = model.config
    num_time_patches = batches[0]["input_values"].shape[1] // config.patch_size
    results = {}
    for term in terms:
        results[term] = {}
        for clones in clone_counts:
            clone_config = copy.deepcopy(config)
            clone_config.clone_batch = clones
            generator = EATMaskGenerator(clone_config)

            def masks(batch, draw, generator=generator):
                return generator(batch["input_values"].shape[0], num_time_patches, config.num_freq_patches,
                                 torch.Generator().manual_seed(draw))

            same_clips = [student_gradient(model, batches[0], masks(batches[0], draw), draw, term)
                          for draw in range(draws)]
            other_clips = [student_gradient(model, batch, masks(batch, 0), 0, term) for batch in batches]
            results[term][str(clones)] = {
                "masks": mean_pairwise_cosine(same_clips),
                "clips": mean_pairwise_cosine(other_clips),
                "norm": statistics.fmean(float(gradient.norm()) for gradient in other_clips),
            }
    model.zero_grad()
    return results


def term_shares(model: EATForPreTraining, batches: Sequence[dict], seed: int = 0) -> dict[str, dict[str, float]]:
    """Per reduction of the utterance loss (`sum`, the official one, and `mean`): the utterance term's mean share of
    the student's gradient step over the batches (see the module's docstring), and the mean norms of the two terms'
    gradients, from one draw of the model's masks per batch."""
    model.train()
    config = model.config
    mask_generator = EATMaskGenerator(config)
    measured = {reduction: {"utterance_share": [], "utterance_norm": [], "frame_norm": []} for reduction in REDUCTIONS}
    for batch in batches:
        num_clips, num_frames = batch["input_values"].shape[:2]
        rows = num_clips * config.clone_batch
        masks = mask_generator(num_clips, num_frames // config.patch_size, config.num_freq_patches,
                               torch.Generator().manual_seed(seed))
        frame = student_gradient(model, batch, masks, seed, "frame_loss")
        utterance = student_gradient(model, batch, masks, seed, "utterance_loss") * config.utterance_loss_weight
        # The gradient of the official sum: the model's own reduction, or its mean times the rows.
        utterance_sum = utterance if config.utterance_loss_reduction == "sum" else utterance * rows
        for reduction, weighted in (("sum", utterance_sum), ("mean", utterance_sum / rows)):
            step = frame + weighted
            measured[reduction]["utterance_share"].append(float(step @ weighted / (step @ step)))
            measured[reduction]["utterance_norm"].append(float(weighted.norm()))
            measured[reduction]["frame_norm"].append(float(frame.norm()))
    model.zero_grad()
    return {reduction: {name: statistics.fmean(values) for name, values in values_by_name.items()}
            for reduction, values_by_name in measured.items()}


REDUCTIONS = ("sum", "mean")
MEASURES = ("agreement", "shares")


def diagnostics_main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Mask noise against clip noise in a pre-training gradient.")
    parser.add_argument("--model_name_or_path", required=True, help="an EATForPreTraining folder")
    parser.add_argument("--dataset_name", required=True, help="audiofolder whose train split is pre-training data")
    parser.add_argument("--max_length_seconds", type=float, default=1.0)
    parser.add_argument("--tile_short_clips", action="store_true")
    parser.add_argument("--per_device_train_batch_size", type=int, default=8)
    parser.add_argument("--num_batches", type=int, default=4)
    parser.add_argument("--draws", type=int, default=4)
    parser.add_argument("--measure", nargs="+", choices=MEASURES, default=["agreement"],
                        help="agreement: mask noise against clip noise; shares: each loss term's share of the step")
    parser.add_argument("--output_json", required=True)
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = EATForPreTraining.from_pretrained(args.model_name_or_path)
    feature_extractor = load_feature_extractor(None, args.model_name_or_path)
    dataset = PretrainingAudioDataset(
        load_audio_dataset(args.dataset_name), max_length_seconds=args.max_length_seconds,
        tile_short_clips=args.tile_short_clips,
    )
    num_frames = crop_num_frames(args.max_length_seconds, model.config.patch_size)
    collator = EATPretrainingCollator(feature_extractor, model.mask_generator, num_frames, model.config.patch_size)
    # Clips drawn across the whole split: its files are sorted by label and speaker.
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    size = args.per_device_train_batch_size
    batches = [collator([dataset[(0, index)] for index in order[start * size : (start + 1) * size]])
               for start in range(args.num_batches)]
    results = {}
    if "agreement" in args.measure:
        results.update(gradient_agreement(model, batches, (1, model.config.clone_batch), args.draws))
    if "shares" in args.measure:
        results["shares"] = term_shares(model, batches)
    with open(args.output_json, "w") as handle:
        json.dump(results, handle, indent=1)
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    diagnostics_main()
