"""The fine-tuning workflow (`training/finetune.py`): recipes (`recipes`), augmentations (`augmentations`), label
columns (`labels`), data sets and sampling (`data`), the `Trainer` and its losses (`trainer`), and metrics and
reports (`metrics`)."""
