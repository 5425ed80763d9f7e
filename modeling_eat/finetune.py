"""`python -m modeling_eat.finetune`: fine-tune EAT for audio classification with the `Trainer` (see
`modeling_eat.finetuning`)."""

from .finetuning.cli import finetune_main as main


if __name__ == "__main__":
    main()
