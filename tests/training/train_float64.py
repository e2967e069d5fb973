"""``flair-elmo train`` with float64 parameters: run under ``torchrun`` by test_distributed.py."""

import sys

import torch

from flair_elmo_modes.cli.main import main

if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    raise SystemExit(main(["train", *sys.argv[1:]]))
