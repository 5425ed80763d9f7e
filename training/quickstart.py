#!/usr/bin/env python
"""The quickstart from a checkout; the work is in the package, and this file runs what
`python -m modeling_eat.quickstart` runs."""

from modeling_eat.study.quickstart import quickstart_main


if __name__ == "__main__":
    quickstart_main()
