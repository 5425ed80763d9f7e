"""The pre-training workflow (`python -m modeling_eat.pretrain`, `cli`): data (`data`), run settings and refused
set-ups (`settings`), resumable checkpoints (`checkpoints`) and what a run watches (`monitoring`)."""
