"""How the converter refuses: every problem it finds is named in one error, and nothing is written."""


class ConversionError(ValueError):
    """The checkpoint cannot be converted faithfully; the message names every problem found."""


class UnsafeCheckpointError(ConversionError):
    """The checkpoint needs arbitrary unpickling and the user did not say they trust it."""


def require(condition: bool, message: str):
    if not condition:
        raise ConversionError(message)


def raise_for_problems(problems: list[str], what: str):
    if problems:
        listing = "\n  ".join(problems)
        raise ConversionError(f"refusing to convert {what}: {len(problems)} problem(s), nothing written:\n  {listing}")


__all__ = ["ConversionError", "UnsafeCheckpointError", "raise_for_problems", "require"]
