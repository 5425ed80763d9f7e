"""`python -m modeling_eat.quickstart`: EAT end to end on a CPU, offline — a built-in synthesised sound set (or your
audiofolder), pre-training, few-label fine-tuning against the same fine-tuning from scratch, and the pipeline (see
`modeling_eat.study.quickstart`)."""

from .study.quickstart import quickstart_main as main


if __name__ == "__main__":
    main()
