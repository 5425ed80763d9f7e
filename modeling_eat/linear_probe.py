"""`python -m modeling_eat.linear_probe`: logistic regression on the frozen embeddings of a checkpoint, a quick measure
of its quality (see `modeling_eat.inference.probe`)."""

from .inference.cli import probe_main as main


if __name__ == "__main__":
    main()
