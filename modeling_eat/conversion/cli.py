"""`python -m modeling_eat.convert`: an official EAT checkpoint (fairseq or the hub's remote-code port) into a
transformers folder.

Examples:

    python -m modeling_eat.convert --checkpoint_path EAT-base_epoch10_pt.pt --output_dir eat-base --trust_pickle
    python -m modeling_eat.convert --checkpoint_path EAT-base_epoch10_pt.pt --output_dir eat-base-pretraining \
        --target pretraining --trust_pickle
    python -m modeling_eat.convert --checkpoint_path EAT_finetuned_AS2M.pt --output_dir eat-base-as2m --trust_pickle
"""

import argparse
import sys

from ..runtime import configure_logging, one_line_errors
from .convert import TARGETS, convert_checkpoint
from .errors import ConversionError


DESCRIPTION = """\
Converts an official EAT checkpoint into a folder that transformers loads (weights as safetensors, config.json,
preprocessor_config.json, the model code for trust_remote_code, and a model card). Reads fairseq pre-training
checkpoints, fairseq fine-tuned checkpoints and folders in the layout of the hub's remote-code port. Before writing
anything, the converter checks that every weight maps to exactly one of ours with the same shape and that the
converted model reproduces an independent forward over the original weights within 1e-4; otherwise it writes nothing.

Security: checkpoints are first read with torch.load(weights_only=True), which cannot run code. fairseq checkpoints
need full unpickling, which can run any code the file names: the converter refuses them unless you pass --trust_pickle,
and you should only do so for files from a source you trust.
"""


def parse_convert_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modeling_eat.convert", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--checkpoint_path", required=True,
                        help="fairseq .pt checkpoint, or a folder in the hub port's layout (config.json + weights)")
    parser.add_argument("--output_dir", required=True, help="folder to write the converted model to")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="replace the model (and a run's results, checkpoints and pictures) already in "
                             "--output_dir; its other files are kept. Without it such a folder is refused")
    parser.add_argument("--target", choices=TARGETS, default=None,
                        help="what to build: EATModel (encoder), EATForAudioClassification (classification) or "
                             "EATForPreTraining (pretraining: student, EMA teacher and decoder, to continue "
                             "pre-training). Default: classification if the checkpoint has a head, else encoder")
    parser.add_argument("--use_ema", action="store_true",
                        help="with --target encoder: take the EMA teacher's weights instead of the student's")
    parser.add_argument("--id2label", default=None,
                        help="JSON file naming the classes: {\"0\": \"name\", ...} or a list of names. Default: the "
                             "527 AudioSet names for 527-output heads, else LABEL_i")
    parser.add_argument("--trust_pickle", action="store_true",
                        help="allow torch.load(weights_only=False), which RUNS CODE stored in the file; needed for "
                             "fairseq checkpoints; only for files you trust")
    # As in modeling_eat.pretrain and .finetune; `--push_to_hub REPO_ID`, `--token` and `--private` are this
    # script's earlier spellings.
    parser.add_argument("--push_to_hub", nargs="?", const=True, default=False, metavar="REPO_ID",
                        help="also publish the written folder to the Hub repository --hub_model_id")
    parser.add_argument("--hub_model_id", default=None,
                        help="with --push_to_hub: the repository, ORG/NAME (default: the --output_dir name)")
    parser.add_argument("--hub_token", "--token", default=None,
                        help="with --push_to_hub: Hub token (default: the logged-in one)")
    parser.add_argument("--hub_private_repo", "--private", action="store_true",
                        help="with --push_to_hub: create the repository private")
    args = parser.parse_args(argv)
    if isinstance(args.push_to_hub, str):
        if args.hub_model_id not in (None, args.push_to_hub):
            parser.error(f"--push_to_hub {args.push_to_hub} and --hub_model_id {args.hub_model_id} name two "
                         "repositories: pass --push_to_hub --hub_model_id ORG/NAME")
        args.hub_model_id, args.push_to_hub = args.push_to_hub, True
    return args


@one_line_errors
def convert_main(argv=None) -> int:
    configure_logging()
    args = parse_convert_args(argv)
    try:
        # The flags are named as convert_checkpoint's parameters.
        report = convert_checkpoint(**vars(args))
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(report)
    return 0

