#!/usr/bin/env python
"""Example launcher of EAT pre-training; the work is in the package, and this file runs what
`python -m modeling_eat.pretrain` runs:

    accelerate launch --config_file training/configs/accelerate_ddp.yaml training/pretrain.py --dataset_name DATA ...
"""

from modeling_eat.pretraining.cli import pretrain_main


if __name__ == "__main__":
    pretrain_main()
