"""Errors raised for bad ELMo files."""


class ElmoFileError(ValueError):
    """An ELMo options or weight file is malformed or does not match its options.

    The message names the file, the field or dataset, what was expected and what was found.
    """
