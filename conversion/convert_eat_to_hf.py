#!/usr/bin/env python
"""Example launcher of the checkpoint converter; the work is in the package, this file is what
`python -m modeling_eat.convert` runs:

    python conversion/convert_eat_to_hf.py --checkpoint_path EAT-base_epoch10_pt.pt --output_dir eat-base \
        --trust_pickle
"""

import sys

from modeling_eat.conversion.cli import convert_main


if __name__ == "__main__":
    sys.exit(convert_main())
