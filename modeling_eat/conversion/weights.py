"""Renaming a source state dict into this package's names, and the checks that every weight lands on exactly one
of ours with the same shape and that the positional tables are EAT's."""

import re

import torch

from ..configuration_eat import EATConfig
from ..modeling_eat import sincos_position_table
from .errors import raise_for_problems
from .layouts import SourceCheckpoint, decoder_rules, encoder_rules, head_rules
from .reference import TOLERANCE


def dropping(rules: list[tuple[re.Pattern, str]], reason: str) -> list[tuple[re.Pattern, None, str]]:
    """The same source keys, recognised but left out of the conversion on purpose (and reported)."""
    return [(pattern, None, reason) for pattern, _ in rules]


def conversion_rules(source: SourceCheckpoint, target: str, use_ema: bool) -> list[tuple[re.Pattern, str | None, str]]:
    """`(source key pattern, our key template or None to leave it out, why)` for one conversion.

    Every source key must match one rule: a key no rule knows is refused, so a checkpoint from a different
    architecture cannot convert silently with parts missing.
    """
    layout = source.layout
    teacher = layout.teacher()
    if target == "pretraining":
        rules = [(pattern, template, "") for pattern, template in
                 encoder_rules(layout, "eat.") + encoder_rules(teacher, "teacher.encoder.") + decoder_rules(layout)]
        return rules + dropping(decoder_rules(teacher), "a decoder inside the EMA teacher (the teacher never decodes)")
    student_prefix = "" if target == "encoder" else "eat."
    if use_ema:
        rules = [(pattern, template, "") for pattern, template in encoder_rules(teacher, student_prefix)]
        rules += dropping(encoder_rules(layout, ""), "the student (--use_ema takes the EMA teacher)")
    else:
        rules = [(pattern, template, "") for pattern, template in encoder_rules(layout, student_prefix)]
        rules += dropping(encoder_rules(teacher, ""), "the EMA teacher (--target pretraining keeps it)")
    rules += dropping(decoder_rules(layout) + decoder_rules(teacher),
                      "the pre-training decoder (--target pretraining keeps it)")
    if layout.head_prefix is not None:
        if target == "classification":
            rules += [(pattern, template, "") for pattern, template in head_rules(layout)]
        else:
            rules += dropping(head_rules(layout), "the classification head (--target classification keeps it)")
    return rules


def rename_state_dict(source: SourceCheckpoint, target: str, use_ema: bool):
    """Source weights under our names. Returns (converted, unknown source keys, {reason: count} of left-out keys).

    Positional tables are not weights of ours (we recompute them): `verify_position_tables` checks them instead.
    """
    rules = conversion_rules(source, target, use_ema)
    position_keys = {source.layout.positions_key, source.layout.teacher().positions_key}
    converted, unknown, left_out = {}, [], {}
    for key, tensor in source.state_dict.items():
        if key in position_keys:
            continue
        for pattern, template, reason in rules:
            match = pattern.fullmatch(key)
            if match is None:
                continue
            if template is None:
                left_out[reason] = left_out.get(reason, 0) + 1
            else:
                converted[template.format(*match.groups())] = tensor
            break
        else:
            unknown.append(key)
    if target == "pretraining":
        converted["teacher.num_updates"] = torch.tensor(source.num_updates or 0, dtype=torch.long)
    return converted, unknown, left_out


def key_problems(converted: dict[str, torch.Tensor], unknown: list[str], expected: dict[str, torch.Size]) -> list[str]:
    problems = [f"unexpected source key (no weight of ours takes it): {key}" for key in sorted(unknown)]
    problems += [
        f"unexpected key (the model has no such weight): {key}" for key in sorted(converted.keys() - expected)
    ]
    problems += [
        f"missing key (the checkpoint does not provide it): {key}" for key in sorted(expected - converted.keys())
    ]
    problems += [
        f"shape mismatch for {key}: checkpoint {tuple(converted[key].shape)}, model {tuple(expected[key])}"
        for key in sorted(set(converted) & set(expected))
        if tuple(converted[key].shape) != tuple(expected[key])
    ]
    return problems


def verify_position_tables(source: SourceCheckpoint, config: EATConfig, keys_used: list[str]) -> dict[str, float]:
    """Checks every positional table the conversion relies on equals our recomputed table on the rows it has."""
    differences, problems = {}, []
    for key in keys_used:
        table = source.state_dict.get(key)
        if table is None:
            problems.append(f"missing key (the checkpoint does not provide it): {key}")
            continue
        if table.is_meta:
            continue
        num_rows = table.shape[-2]
        if table.dim() != 3 or table.shape[-1] != config.hidden_size or num_rows % config.num_freq_patches:
            problems.append(
                f"shape mismatch for {key}: {tuple(table.shape)}, expected [1, rows, {config.hidden_size}] with rows "
                f"a multiple of {config.num_freq_patches} (512 or 6144 in the official checkpoints)"
            )
            continue
        ours = sincos_position_table(num_rows // config.num_freq_patches, config.num_freq_patches, config.hidden_size)
        difference = (table[0].float() - ours).abs()
        worst = float(difference.max())
        differences[f"positional table {key} ({num_rows} rows)"] = worst
        if worst > TOLERANCE:
            bad_rows = (difference.amax(dim=1) > TOLERANCE).nonzero().flatten().tolist()
            problems.append(
                f"positional table {key} differs from EAT's fixed 2-D sin-cos table (which this package recomputes): "
                f"max |difference| {worst:.3g} > {TOLERANCE:g} on {len(bad_rows)} of {num_rows} rows (first rows "
                f"{bad_rows[:5]}); the checkpoint is corrupted or is not EAT"
            )
    raise_for_problems(problems, f"{source.path}")
    return differences


__all__ = ["conversion_rules", "key_problems", "rename_state_dict", "verify_position_tables"]
