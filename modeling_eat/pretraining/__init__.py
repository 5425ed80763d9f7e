"""The pre-training workflow (`training/pretrain.py`): data (`data`), run settings and refused set-ups (`settings`),
and resumable checkpoints (`checkpoints`)."""
