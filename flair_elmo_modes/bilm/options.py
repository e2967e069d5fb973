"""The ELMo ``options.json``: parsed once into a frozen :class:`ElmoOptions`."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flair_elmo_modes.bilm.errors import ElmoFileError, require_file

ACTIVATIONS = ("tanh", "relu")
#: The fewest character slots a token can have: begin-of-word, one character (or a sentence
#: marker's id) and end-of-word (see :mod:`~flair_elmo_modes.bilm.characters`).
MIN_CHARACTERS_PER_TOKEN = 3


#: Where each field of :class:`ElmoOptions` is in AllenNLP's ``options.json``.
OPTIONS_JSON_FIELDS = {
    "char_embedding_dim": "char_cnn.embedding.dim",
    "filters": "char_cnn.filters",
    "n_highway": "char_cnn.n_highway",
    "activation": "char_cnn.activation",
    "n_characters": "char_cnn.n_characters",
    "max_characters_per_token": "char_cnn.max_characters_per_token",
    "cell_dim": "lstm.dim",
    "projection_dim": "lstm.projection_dim",
    "n_layers": "lstm.n_layers",
    "cell_clip": "lstm.cell_clip",
    "proj_clip": "lstm.proj_clip",
    "use_skip_connections": "lstm.use_skip_connections",
}


@dataclass(frozen=True)
class ElmoOptions:
    """Architecture of an ELMo biLM, as in AllenNLP's ``options.json``.

    Attributes:
        char_embedding_dim: size of one character embedding (``char_cnn.embedding.dim``).
        filters: ``(width, count)`` of every convolution (``char_cnn.filters``).
        n_highway: number of highway layers after the convolutions.
        activation: ``"tanh"`` or ``"relu"``, applied after max-pooling each convolution.
        n_characters: rows of the character embedding, padding row included (262 in published models).
        max_characters_per_token: character slots per token (50 in every published model).
        cell_dim: LSTM memory cells per direction (``lstm.dim``).
        projection_dim: LSTM output size per direction, and the size of layer 0 per direction.
        n_layers: number of LSTM layers per direction.
        cell_clip: memory cells are clamped to ``[-cell_clip, cell_clip]``; 0 means no clipping.
        proj_clip: projected outputs are clamped likewise; 0 means no clipping.
        use_skip_connections: add each LSTM layer's input to its output (layers >= 1).
    """

    char_embedding_dim: int
    filters: tuple[tuple[int, int], ...]
    n_highway: int
    activation: str
    n_characters: int
    max_characters_per_token: int
    cell_dim: int
    projection_dim: int
    n_layers: int
    cell_clip: float
    proj_clip: float
    use_skip_connections: bool

    def __post_init__(self) -> None:
        # Also for options built in code (dataclasses.replace), not only from options.json.
        if self.max_characters_per_token < MIN_CHARACTERS_PER_TOKEN:
            raise ElmoFileError(_too_few_characters("options", self.max_characters_per_token))

    @property
    def n_filters(self) -> int:
        """Width of the concatenated convolution outputs."""
        return sum(count for _, count in self.filters)

    @property
    def char_embedding_rows(self) -> int:
        """Rows of the character embedding including the padding row 0.

        bilm-tf trains with ``n_characters: 261`` and publishes 262; either way the ids 0..261 of
        :mod:`~flair_elmo_modes.bilm.characters` need 262 rows.
        """
        return max(self.n_characters, 262)

    @property
    def output_dim(self) -> int:
        """Size of every biLM layer: ``2 * projection_dim`` (forward and backward)."""
        return 2 * self.projection_dim

    @property
    def num_output_layers(self) -> int:
        """Layers returned by the biLM: the character layer plus ``n_layers`` LSTM layers."""
        return self.n_layers + 1

    @classmethod
    def from_dict(
        cls,
        raw: Mapping[str, Any],
        source: str = "options",
        byte_ids: bool = True,
        names: Mapping[str, str] | None = None,
        fixed: Mapping[str, Any] | None = None,
    ) -> ElmoOptions:
        """Parse and validate the JSON structure of ``options.json`` (or of another format's file).

        Args:
            raw: the parsed JSON.
            source: the file, for messages.
            byte_ids: ``n_characters`` must cover AllenNLP's 261 byte and marker ids; False for a
                model with its own character lexicon (ELMoForManyLangs).
            names: the dotted name of each field in ``raw``; :data:`OPTIONS_JSON_FIELDS` by default.
            fixed: fields given instead of read (and absent from ``names``).

        Raises:
            ElmoFileError: a field is missing or has a wrong type or value (NaN and infinities
                included); the message names ``source``, the field, its value and what was expected.
        """
        names = OPTIONS_JSON_FIELDS if names is None else names
        values: dict[str, Any] = dict(fixed or {})
        reader = FieldReader(raw, source)

        def read(field: str, parse: Any) -> None:
            if field not in values:
                values[field] = parse(names[field])

        read("filters", lambda name: _read_filters(reader, name, source))
        read("activation", lambda name: _read_activation(reader, name, source))
        read("max_characters_per_token", lambda name: reader.positive_int(name, default=50))
        if values["max_characters_per_token"] < MIN_CHARACTERS_PER_TOKEN:
            name = names.get("max_characters_per_token", "max_characters_per_token")
            raise ElmoFileError(_too_few_characters(source, values["max_characters_per_token"], name))
        for field in ("char_embedding_dim", "n_characters", "cell_dim", "projection_dim", "n_layers"):
            read(field, reader.positive_int)
        read("n_highway", reader.non_negative_int)
        read("cell_clip", reader.clip)
        read("proj_clip", reader.clip)
        read("use_skip_connections", lambda name: reader.get(name, bool, default=True))
        options = cls(**values)
        max_width = max(width for width, _ in options.filters)
        if max_width > options.max_characters_per_token:
            raise ElmoFileError(
                f"{source}: a filter of width {max_width} is wider than "
                f"'{names.get('max_characters_per_token')}' = {options.max_characters_per_token}"
            )
        if byte_ids and options.n_characters < 261:
            raise ElmoFileError(
                f"{source}: '{names['n_characters']}' is {options.n_characters}; expected >= 261 "
                "(256 byte values and 5 ELMo markers)"
            )
        return options

    @classmethod
    def from_json(cls, path: str | Path) -> ElmoOptions:
        """Read and validate an ``options.json`` file.

        Raises:
            FileNotFoundError: the file does not exist.
            ElmoFileError: the file is not valid JSON or misses a field.
        """
        path = require_file(path, "ELMo options file")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ElmoFileError(f"{path}: not a valid JSON options file ({error})") from error
        except RecursionError:  # Python's JSON parser recurses once per nested array or object
            raise ElmoFileError(
                f"{path}: not a valid options file (JSON nested too deeply to parse; options.json nests 3 levels)"
            ) from None
        if not isinstance(raw, dict):
            raise ElmoFileError(
                f"{path}: expected a JSON object with 'char_cnn' and 'lstm', found {type(raw).__name__}"
            )
        return cls.from_dict(raw, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The JSON structure of ``options.json`` (inverse of :meth:`from_dict`)."""
        return {
            "char_cnn": {
                "activation": self.activation,
                "embedding": {"dim": self.char_embedding_dim},
                "filters": [list(pair) for pair in self.filters],
                "max_characters_per_token": self.max_characters_per_token,
                "n_characters": self.n_characters,
                "n_highway": self.n_highway,
            },
            "lstm": {
                "cell_clip": self.cell_clip,
                "dim": self.cell_dim,
                "n_layers": self.n_layers,
                "proj_clip": self.proj_clip,
                "projection_dim": self.projection_dim,
                "use_skip_connections": self.use_skip_connections,
            },
        }


def _read_filters(reader: FieldReader, name: str, source: str) -> tuple[tuple[int, int], ...]:
    filters_raw = reader.get(name, list)
    if not filters_raw:
        raise ElmoFileError(f"{source}: '{name}' is empty; expected [[width, count], ...]")
    for i, pair in enumerate(filters_raw):
        if (
            not isinstance(pair, (list, tuple))
            or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)
        ):
            raise ElmoFileError(f"{source}: '{name}[{i}]' is {pair!r}; expected [width, count] of positive ints")
    return tuple((pair[0], pair[1]) for pair in filters_raw)


def _read_activation(reader: FieldReader, name: str, source: str) -> str:
    activation = reader.get(name, str)
    if activation not in ACTIVATIONS:
        raise ElmoFileError(f"{source}: '{name}' is {activation!r}; expected one of {ACTIVATIONS}")
    return activation


def _too_few_characters(source: str, value: int, name: str = "char_cnn.max_characters_per_token") -> str:
    return (
        f"{source}: '{name}' is {value}; expected >= {MIN_CHARACTERS_PER_TOKEN} "
        "(begin-of-word, a character and end-of-word markers)"
    )


class FieldReader:
    """Reads dotted fields from the options dict with errors that name the field."""

    _MISSING = object()

    def __init__(self, raw: Mapping[str, Any], source: str) -> None:
        self.raw = raw
        self.source = source

    def get(self, field: str, kind: type, default: Any = _MISSING) -> Any:
        node: Any = self.raw
        for part in field.split("."):
            if not isinstance(node, Mapping) or part not in node:
                if default is not self._MISSING:
                    return default
                raise ElmoFileError(f"{self.source}: missing field '{field}'")
            node = node[part]
        # JSON parsers accept NaN, Infinity and overflowing literals such as 1e999 (-> inf): no field means them.
        if isinstance(node, float) and not math.isfinite(node):
            raise ElmoFileError(f"{self.source}: '{field}' is {node!r}; expected a finite number")
        numeric = kind in (int, float) and isinstance(node, bool)
        if numeric or not isinstance(node, (int, float) if kind is float else kind):
            raise ElmoFileError(f"{self.source}: '{field}' is {node!r}; expected {kind.__name__}")
        return node

    def positive_int(self, field: str, default: Any = _MISSING) -> int:
        value = self.get(field, int, default)
        if value <= 0:
            raise ElmoFileError(f"{self.source}: '{field}' is {value}; expected a positive integer")
        return value

    def non_negative_int(self, field: str) -> int:
        value = self.get(field, int)
        if value < 0:
            raise ElmoFileError(f"{self.source}: '{field}' is {value}; expected an integer >= 0")
        return value

    def clip(self, field: str) -> float:
        # AllenNLP tests clip values for truthiness: absent, null or 0 all mean "no clipping".
        value = self.get(field, object, default=None)
        if value is None:
            return 0.0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ElmoFileError(f"{self.source}: '{field}' is {value!r}; expected a number >= 0 (0 = no clipping)")
        return float(value)
