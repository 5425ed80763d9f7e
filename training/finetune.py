#!/usr/bin/env python
"""Example launcher of EAT fine-tuning; the work is in the package, and this file runs what
`python -m modeling_eat.finetune` runs:

    python training/finetune.py --model_name_or_path FOLDER --dataset_name DATA --recipe esc50 --output_dir OUT
"""

from modeling_eat.finetuning.cli import finetune_main


if __name__ == "__main__":
    finetune_main()
