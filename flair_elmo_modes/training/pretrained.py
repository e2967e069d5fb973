"""The model a run starts from (``TrainConfig.init_from``, ``flair-elmo train --init-from``): the one
check that it is a trainable model, used for its options (the CLI's size flags) and its weights."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flair_elmo_modes.bilm.options import ElmoOptions
from flair_elmo_modes.models import ALLENNLP, ModelFiles, ModelSpec, model_options

if TYPE_CHECKING:
    from flair_elmo_modes.bilm.model import ElmoBiLm
    from flair_elmo_modes.training.data import Vocabulary
    from flair_elmo_modes.training.lm import BiLanguageModel

#: Why ``--init-from`` refuses an ELMoForManyLangs model.
NOT_TRAINABLE = (
    "an ELMoForManyLangs model; training starts from AllenNLP-format models only (byte-level characters, "
    "no word vectors)"
)


def pretrained_files(model: str) -> ModelFiles:
    """The files of ``model`` (a name, directory or archive, as :class:`ModelSpec` reads it).

    Raises:
        ValueError: ``model`` is no model, or an ELMoForManyLangs one (:data:`NOT_TRAINABLE`);
            the message starts with ``--init-from {model}``.
    """
    try:
        files = ModelSpec.parse(model).resolve()
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"--init-from {model}: not a model ({error})") from error
    if files.format != ALLENNLP:
        raise ValueError(f"--init-from {model}: {NOT_TRAINABLE}")
    return files


def pretrained_options(model: str) -> ElmoOptions:
    """The architecture of ``model``, read from its options file alone (no weights).

    Raises:
        ValueError: as :func:`pretrained_files`, or its options file is not valid.
    """
    files = pretrained_files(model)
    try:
        return model_options(files)
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"--init-from {model}: not a model ({error})") from error


def load_pretrained(model: str, reuse_softmax: bool) -> tuple[ElmoBiLm, BiLanguageModel | None, Vocabulary | None]:
    """The biLM of ``model``; with ``reuse_softmax`` also its language model and vocabulary
    (``lm_head.hdf5`` beside the weights, written by ``flair-elmo train``).

    Raises:
        ValueError: as :func:`pretrained_files`, or ``reuse_softmax`` without an ``lm_head.hdf5``.
    """
    from flair_elmo_modes.bilm.hdf5 import load_bilm
    from flair_elmo_modes.training.export import LM_HEAD_NAME, load_language_model

    files = pretrained_files(model)
    if reuse_softmax:
        head = files.weight_file.parent / LM_HEAD_NAME
        if not head.is_file():
            raise ValueError(
                f"--init-from {model}: --reuse-softmax needs {head} (written by flair-elmo train); "
                "published models hold no softmax"
            )
        language_model, vocab = load_language_model(files.weight_file.parent)
        return language_model.bilm, language_model, vocab
    return load_bilm(files.options_file, files.weight_file), None, None
