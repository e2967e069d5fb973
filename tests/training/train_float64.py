"""``flair-elmo train`` with float64 parameters: run under ``torchrun`` by test_distributed.py.

The model is built as the float32 command builds it (the same random draws, so the same initial
values) and then cast to float64, exactly: a float64 run and a float32 run of the same command
start from the same parameters and differ by rounding only. Everything else runs in float64.
"""

import sys

import torch

from flair_elmo_modes.cli.main import main
from flair_elmo_modes.training import trainer
from flair_elmo_modes.training.lm import BiLanguageModel


def float32_initialised(*args: object, **kwargs: object) -> BiLanguageModel:
    torch.set_default_dtype(torch.float32)
    try:
        model = BiLanguageModel(*args, **kwargs)  # type: ignore[arg-type]
    finally:
        torch.set_default_dtype(torch.float64)
    return model.double()


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    trainer.BiLanguageModel = float32_initialised  # type: ignore[assignment,misc]
    raise SystemExit(main(["train", *sys.argv[1:]]))
