"""`python -m modeling_eat.convert`: an official EAT checkpoint (fairseq `.pt` or a folder of the hub's remote-code
port) as a transformers folder, checked numerically before it is written (see `modeling_eat.conversion`)."""

import sys

from .conversion.cli import convert_main as main


if __name__ == "__main__":
    sys.exit(main())
