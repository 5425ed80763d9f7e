"""The fine-tuning workflow (`python -m modeling_eat.finetune`, `cli`): recipes (`recipes`), augmentations
(`augmentations`), label columns (`labels`), data sets and sampling (`data`), the `Trainer` and its losses (`trainer`),
and metrics and reports (`metrics`)."""
