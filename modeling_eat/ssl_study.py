"""`python -m modeling_eat.ssl_study`: the SSL study (pre-training rows × seeds, each encoder probed frozen and
fine-tuned, mean ± std and a figure); see `modeling_eat.study`."""

from .study.cli import study_main as main


if __name__ == "__main__":
    main()
