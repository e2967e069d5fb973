"""AllenNLP's ELMo API on this package's biLM: ``Elmo``, ``batch_to_ids`` and ``ElmoEmbedder``.

``from allennlp.modules.elmo import Elmo, batch_to_ids`` becomes
``from flair_elmo_modes.allennlp import Elmo, batch_to_ids`` (and allennlp 0.9's
``from allennlp.commands.elmo import ElmoEmbedder`` becomes ``from flair_elmo_modes.allennlp import
ElmoEmbedder``). ``Elmo`` computes AllenNLP 2.10.1's numbers (``tests/test_allennlp_elmo.py``,
against golden files written by AllenNLP itself), with one default changed: it is stateless unless
``stateful=True``. No Flair here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from flair_elmo_modes.bilm import characters
from flair_elmo_modes.bilm.model import ElmoBiLm
from flair_elmo_modes.embedder import ElmoEmbedder
from flair_elmo_modes.layers import ScalarMix
from flair_elmo_modes.models import MANYLANGS, ModelSpec, load_model
from flair_elmo_modes.runner import BiLmRunner, as_token_lists

__all__ = ["Elmo", "ElmoEmbedder", "batch_to_ids"]

logger = logging.getLogger(__name__)


def batch_to_ids(batch: Sequence[Sequence[str]]) -> torch.Tensor:
    """Character ids of tokenized sentences, as AllenNLP's ``batch_to_ids``.

    Args:
        batch: tokenized sentences (lists of ``str``).

    Returns:
        ``(len(batch), timesteps, 50)`` int64 ids, ``timesteps`` the longest sentence's length;
        shorter sentences are padded with rows of 0. Unlike AllenNLP, a batch of empty sentences
        gives ``(len(batch), 0, 50)`` (AllenNLP: ``(len(batch), 0)``) and an empty batch
        ``(0, 0, 50)`` (AllenNLP: ``IndexError``).

    Raises:
        TypeError: a sentence is a string rather than a list of tokens, or a token is not a ``str``.
    """
    return characters.batch_to_ids(as_token_lists(batch))


class Elmo(nn.Module):
    """AllenNLP's ``Elmo``: ``num_output_representations`` trainable mixes of the biLM's layers.

    The biLM runs once per call; each representation is its own :class:`ScalarMix` of the
    ``n_layers + 1`` layers (AllenNLP's ``ScalarMix``: ``gamma * sum_j softmax(w)_j * h_j``, the
    layer norm over the whole batch), then dropout.

    Args:
        options_file: path or URL of ``options.json``; alone (``weight_file=None``), a model name
            (``"en-tiny"``, ``"original"``...) or an AllenNLP model directory, as
            ``ElmoEmbedder`` takes (see :meth:`~flair_elmo_modes.models.ModelSpec.from_allennlp_arguments`); None with
            ``module``.
        weight_file: path or URL of ``weights.hdf5``.
        num_output_representations: how many mixes (representations) to return.
        requires_grad: let gradients reach the biLM (fine-tuning). Otherwise only the mixes get
            them and the biLM runs without autograd.
        do_layer_norm: normalise each layer before mixing, over the real positions (``<S>`` and
            ``</S>`` included) of the whole batch, as AllenNLP does.
        dropout: applied to each representation in training mode.
        vocab_to_cache: words whose character-CNN vectors are computed once; ``forward`` then
            takes ``word_inputs``, indices into this list (0 is padding).
        keep_sentence_boundaries: keep the ``<S>`` and ``</S>`` positions in the output.
        scalar_mix_parameters: fixed (not trained) weights ``w`` before the softmax, one per
            layer, for every mix (``gamma`` stays 1).
        module: an already built :class:`ElmoBiLm` instead of the files (then pass None for
            both). As in AllenNLP, ``requires_grad`` is then ignored: the module's own
            parameters' ``requires_grad`` decide.
        stateful: carry each batch row's LSTM state to the next call, as AllenNLP's ``Elmo``
            always does (the rules of its ``_EncoderBase``: row i starts from the state row i
            left; a larger batch starts its new rows from zeros, a smaller one leaves the other
            rows' state for later). By default every call starts from zero state, so a
            sentence's vectors never depend on earlier batches; AllenNLP gives those numbers
            only on the first call of a fresh module.

    Raises:
        ValueError: ``num_output_representations`` below 1, ``module`` together with files,
            a model in ELMoForManyLangs' format (its ids are not ``batch_to_ids``'s), or a
            ``scalar_mix_parameters`` of the wrong length.
        TypeError: ``module`` is not an :class:`ElmoBiLm`.
    """

    def __init__(
        self,
        options_file: str | Path | None,
        weight_file: str | Path | None,
        num_output_representations: int,
        requires_grad: bool = False,
        do_layer_norm: bool = False,
        dropout: float = 0.5,
        vocab_to_cache: Sequence[str] | None = None,
        keep_sentence_boundaries: bool = False,
        scalar_mix_parameters: Sequence[float] | None = None,
        module: ElmoBiLm | None = None,
        stateful: bool = False,
    ) -> None:
        super().__init__()
        if num_output_representations < 1:
            raise ValueError(f"num_output_representations must be >= 1, got {num_output_representations}")
        if module is not None:
            if options_file is not None or weight_file is not None:
                raise ValueError("Don't provide options_file or weight_file with module")
            if not isinstance(module, ElmoBiLm):
                raise TypeError(f"module must be an ElmoBiLm, got {type(module).__name__}")
            bilm = module
        else:
            files = ModelSpec.from_allennlp_arguments(options_file, weight_file).resolve()
            if files.format == MANYLANGS:
                raise ValueError(
                    f"{files.directory} is an ELMoForManyLangs model: its ids come from its own lexicons, "
                    "not batch_to_ids; use ElmoEmbedder or ELMoEmbeddings"
                )
            bilm = load_model(files)
            bilm.requires_grad_(requires_grad)
        if bilm.lexicons is not None:
            raise ValueError("Elmo takes batch_to_ids's ids; this biLM reads its own lexicons (ELMoForManyLangs)")
        self.bilm = bilm
        self.keep_sentence_boundaries = keep_sentence_boundaries
        self.dropout = nn.Dropout(p=dropout)
        self.runner = BiLmRunner(bilm, stateful)
        num_layers = bilm.options.num_output_layers
        for k in range(num_output_representations):
            mix = ScalarMix(
                num_layers,
                initial_weights=scalar_mix_parameters,
                layer_norm=do_layer_norm,
                trainable=scalar_mix_parameters is None,
                norm_over="batch",
            )
            self.add_module(f"scalar_mix_{k}", mix)  # AllenNLP's names
        self.num_output_representations = num_output_representations
        self.vocab_char_ids: torch.Tensor | None
        if vocab_to_cache is None:
            self.register_buffer("vocab_char_ids", None)
        else:
            words = as_token_lists([vocab_to_cache])[0]
            ids = bilm.token_ids([words])[0]  # (n_vocab, 50): row i spells vocab_to_cache[i]
            self.register_buffer("vocab_char_ids", ids.to(bilm.bos_ids.device), persistent=False)
            # and the rows every batch has: <S>, </S> and the padding after short sentences
            extra = torch.stack([bilm.bos_ids.cpu(), bilm.eos_ids.cpu(), torch.zeros_like(ids[0])])  # (3, 50)
            bilm.char_encoder.cache_tokens(torch.cat([ids, extra]))

    @property
    def stateful(self) -> bool:
        return self.runner.stateful

    @property
    def scalar_mixes(self) -> list[ScalarMix]:
        """The mixes, one per representation (also ``scalar_mix_0``, ``scalar_mix_1``...)."""
        return [getattr(self, f"scalar_mix_{k}") for k in range(self.num_output_representations)]

    def get_output_dim(self) -> int:
        """Size of each representation's vectors: ``2 * projection_dim``."""
        return self.bilm.options.output_dim

    def reset_states(self) -> None:
        """Forget the carried LSTM state (``stateful=True``), as AllenNLP's ``reset_states``."""
        self.runner.reset_states()

    def forward(
        self, inputs: torch.Tensor, word_inputs: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """ELMo representations of a batch.

        Args:
            inputs: ``(batch, timesteps, 50)`` character ids from :func:`batch_to_ids`, or with
                more leading dims ``(..., timesteps, 50)`` (each ``timesteps`` row a sentence).
            word_inputs: with ``vocab_to_cache``, ``(batch, timesteps)`` (or ``(..., timesteps)``)
                indices into it, 0 for padding, used instead of ``inputs``; an index outside the
                vocabulary makes the call use ``inputs`` after all (as AllenNLP backs off).
                Ignored, with a logged warning, without ``vocab_to_cache``.

        Returns:
            ``"elmo_representations"``: ``num_output_representations`` tensors ``(..., timesteps,
            output_dim)`` (``timesteps + 2`` with ``keep_sentence_boundaries``), zero after each
            sentence's end (except with both ``keep_sentence_boundaries`` and ``do_layer_norm``:
            there AllenNLP's padding holds the normalised zeros, and so does ours); ``"mask"``:
            the bool ``(..., timesteps)`` (or ``timesteps + 2``) mask of the real positions.
        """
        if inputs.dim() < 3:
            raise ValueError(f"Elmo expects character ids of shape (batch, timesteps, 50), got {tuple(inputs.shape)}")
        leading = inputs.shape[:-2]
        char_ids = inputs.reshape(math.prod(leading), *inputs.shape[-2:])  # (batch, timesteps, 50)
        if word_inputs is not None:
            if self.vocab_char_ids is None:
                logger.warning("Word inputs were passed to ELMo but it does not have a cached vocab.")
            else:
                leading = word_inputs.shape[:-1]
                words = word_inputs.reshape(math.prod(leading), word_inputs.shape[-1])  # (batch, timesteps)
                if bool(((words >= 0) & (words < len(self.vocab_char_ids))).all()):
                    spelled = self.vocab_char_ids[words.to(self.vocab_char_ids.device)]  # (batch, timesteps, 50)
                    char_ids = spelled * (words > 0).unsqueeze(-1).to(spelled.device)
        grad = any(parameter.requires_grad for parameter in self.bilm.parameters())
        output = self.runner.run_ids(char_ids, grad=grad, keep_boundaries=True)
        layers, mask = output.layers, output.mask  # (n_layers + 1, batch, timesteps + 2, dim), (batch, timesteps + 2)
        if not self.keep_sentence_boundaries:
            mask = mask[:, 2:]  # (batch, timesteps): n + 2 positions with boundaries, n without
        representations = []
        for mix in self.scalar_mixes:
            representation = mix(layers, output.mask)  # (batch, timesteps + 2, dim)
            if not self.keep_sentence_boundaries:
                representation = representation[:, 1:-1].masked_fill(~mask.unsqueeze(-1), 0.0)
            representations.append(self.dropout(representation))
        timesteps = mask.shape[-1]
        return {
            "elmo_representations": [r.reshape(*leading, timesteps, r.shape[-1]) for r in representations],
            "mask": mask.reshape(*leading, timesteps),
        }
