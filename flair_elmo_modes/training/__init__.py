"""Training ELMo biLMs as forward and backward word-level language models (``flair-elmo train``)."""

from flair_elmo_modes.training.config import SMALL_OPTIONS, TrainConfig
from flair_elmo_modes.training.data import TrainingDataError, Vocabulary
from flair_elmo_modes.training.export import export_model, load_language_model
from flair_elmo_modes.training.trainer import Perplexity, StepInfo, TrainResult, evaluate, train_bilm

__all__ = [
    "SMALL_OPTIONS",
    "Perplexity",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "TrainingDataError",
    "Vocabulary",
    "evaluate",
    "export_model",
    "load_language_model",
    "train_bilm",
]
