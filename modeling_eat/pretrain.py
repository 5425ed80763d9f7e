"""`python -m modeling_eat.pretrain` (or `accelerate launch -m modeling_eat.pretrain`): pre-train EAT or MaskSpec on
unlabeled audio (see `modeling_eat.pretraining`)."""

from .pretraining.cli import pretrain_main as main


if __name__ == "__main__":
    main()
