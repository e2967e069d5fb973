"""Tokens to ids through an ELMoForManyLangs model's own lexicons (``char.dic``, ``word.dic``).

HIT-SCIR's ELMoForManyLangs (``elmoformanylangs``) does not read UTF-8 bytes as AllenNLP does:
each character is looked up in the model's character lexicon, and optionally the whole word in
its word lexicon. Their rules, mirrored here (``elmoformanylangs/elmo.py`` ``read_list``,
``frontend.py`` ``create_one_batch``):

- a token longer than ``max_characters_per_token - 2`` characters is cut to that many (for the
  word lookup too); unknown characters and words get the ``<oov>`` id; words are not lowercased;
- a token's slots are ``<eow>``, its characters, ``<bow>``, then ``<pad>``: their code takes the
  id of ``<eow>`` as the begin-of-word marker and ``<bow>``'s as the end (swapped, in training
  as in inference, so the published weights expect it);
- the sentence markers ``<bos>`` and ``<eos>`` (also a token spelt so) hold their own character
  between the two word markers, and their word id (``<oov>``'s when the word lexicon lacks them).

Ids are shifted by +1 so that 0 stays free for batch padding (the row of zeros that
:class:`~flair_elmo_modes.bilm.model.ElmoBiLm` masks), as for AllenNLP's byte ids; the
embeddings get a zero row 0 to match (see :mod:`flair_elmo_modes.bilm.manylangs`). With a word
lexicon every token row has one more column at the end: its word id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flair_elmo_modes.bilm.characters import sentences_to_ids
from flair_elmo_modes.bilm.errors import ElmoFileError, not_a_file

ID_OFFSET = 1
BOS, EOS, OOV, PAD, BOW, EOW = "<bos>", "<eos>", "<oov>", "<pad>", "<bow>", "<eow>"
#: Entries a character lexicon must hold (their trainer writes all six).
CHAR_SPECIALS = (BOS, EOS, OOV, PAD, BOW, EOW)
#: Entries a word lexicon must hold; ``<bos>``/``<eos>`` fall back to ``<oov>``.
WORD_SPECIALS = (OOV, PAD)
#: What a lexicon line holding only an id stands for: their reader strips each line, so an entry
#: whose token is whitespace loses it, and they file it under the ideographic space.
BLANK_TOKEN = "\u3000"


def read_lexicon(path: str | Path) -> dict[str, int]:
    """A ``token<TAB>id`` lexicon, read as ``elmoformanylangs`` reads it.

    Each line is stripped and split at tabs; a line with only an id belongs to
    :data:`BLANK_TOKEN`; a later entry of the same token wins.

    Raises:
        ElmoFileError: the file is missing, not UTF-8, or a line is not ``token<TAB>id`` with a
            non-negative integer id; names the file and line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise ElmoFileError(str(not_a_file(path, "lexicon"))) from None
    except UnicodeDecodeError as error:
        raise ElmoFileError(f"{path}: not UTF-8 ({error})") from None
    lexicon: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):  # their codecs reader splits lines so
        if not line.strip():
            continue  # their reader would fail on it; a trailing newline is the usual case
        fields = line.strip().split("\t")
        if len(fields) == 1:
            fields.insert(0, BLANK_TOKEN)
        if len(fields) != 2 or not fields[1].isdigit():
            raise ElmoFileError(f"{path}, line {number}: expected 'token<TAB>id', got {line[:60]!r}")
        lexicon[fields[0]] = int(fields[1])
    return lexicon


@dataclass(frozen=True)
class Lexicons:
    """The token input of an ELMoForManyLangs model.

    Attributes:
        chars: character lexicon, token -> id (their ids, unshifted).
        words: word lexicon, or None for a model without word embeddings.
        word_dim: size of the word embedding (0 without one).
        source: where the lexicons came from, for messages (not compared).
    """

    chars: Mapping[str, int]
    words: Mapping[str, int] | None = None
    word_dim: int = 0
    source: str = field(default="lexicons", compare=False)

    def __post_init__(self) -> None:
        _check_lexicon(self.chars, CHAR_SPECIALS, f"{self.source}: character lexicon")
        if (self.words is None) != (self.word_dim == 0):
            raise ElmoFileError(f"{self.source}: a word lexicon needs word_dim > 0 and word_dim > 0 needs one")
        if self.words is not None:
            _check_lexicon(self.words, WORD_SPECIALS, f"{self.source}: word lexicon")

    @property
    def char_rows(self) -> int:
        """Rows of the (shifted) character embedding: one per entry (as theirs), plus row 0."""
        return len(self.chars) + ID_OFFSET

    @property
    def word_rows(self) -> int:
        """Rows of the (shifted) word embedding (0 without words)."""
        return 0 if self.words is None else len(self.words) + ID_OFFSET

    @property
    def padding_id(self) -> int:
        """The shifted id of the slots after a word's end marker."""
        return self.chars[PAD] + ID_OFFSET

    def row_width(self, max_characters: int) -> int:
        """Ids per token: the character slots, plus the word id with a word lexicon."""
        return max_characters + (0 if self.words is None else 1)

    def token_ids(self, token: str, max_characters: int) -> list[int]:
        """The shifted ids of one token of a sentence: ``row_width(max_characters)`` ints, none 0.

        Cut first (their ``read_list``), then a token spelt ``<bos>``/``<eos>`` is that marker.
        """
        if len(token) + 2 > max_characters:
            token = token[: max_characters - 2]
        return self.marker_ids(token, max_characters) if token in (BOS, EOS) else self._ids(token, max_characters)

    def marker_ids(self, marker: str, max_characters: int) -> list[int]:
        """The shifted ids of the sentence marker ``<bos>`` or ``<eos>`` (never cut)."""
        return self._ids(marker, max_characters, [self.chars[marker]])

    def _ids(self, token: str, max_characters: int, slots: list[int] | None = None) -> list[int]:
        chars = self.chars
        if slots is None:
            oov = chars[OOV]
            slots = [chars.get(c, oov) for c in token]
        # Their create_one_batch takes <eow>'s id as begin-of-word and <bow>'s as end-of-word.
        ids = [chars[EOW], *slots, chars[BOW]] + [chars[PAD]] * (max_characters - len(slots) - 2)
        if self.words is not None:
            ids.append(self.words.get(token, self.words[OOV]))
        return [i + ID_OFFSET for i in ids]

    def batch_to_ids(self, sentences: Sequence[Sequence[str]], max_characters: int) -> torch.Tensor:
        """``(batch, timesteps, row_width)`` int64 ids of tokenized sentences, 0-padded."""
        width = self.row_width(max_characters)
        return sentences_to_ids(sentences, width, lambda token: self.token_ids(token, max_characters))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready lexicons and word size (for Flair's ``to_params``)."""
        return {
            "chars": dict(self.chars),
            "words": None if self.words is None else dict(self.words),
            "word_dim": self.word_dim,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "lexicons") -> Lexicons:
        """The inverse of :meth:`to_dict`."""
        try:
            return cls(
                dict(raw["chars"]), None if raw["words"] is None else dict(raw["words"]), int(raw["word_dim"]), source
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ElmoFileError(f"{source}: expected chars, words and word_dim ({error})") from None


def _check_lexicon(lexicon: Mapping[str, int], specials: Sequence[str], what: str) -> None:
    """Their embedding has one row per entry: every id must index one, and the specials exist."""
    missing = [token for token in specials if token not in lexicon]
    if missing:
        raise ElmoFileError(f"{what} lacks {', '.join(missing)}; expected entries for {', '.join(specials)}")
    token, largest = max(lexicon.items(), key=lambda item: item[1])
    if largest >= len(lexicon):
        raise ElmoFileError(
            f"{what}: {token!r} has id {largest}, but {len(lexicon)} entries give ids 0..{len(lexicon) - 1}"
        )
