import dataclasses
import json
from pathlib import Path

import pytest
import torch

from flair_elmo_modes.bilm import ElmoFileError, ElmoOptions, batch_to_ids
from tests.helpers import TINY_OPTIONS, random_bilm


def write(tmp_path: Path, content: object) -> Path:
    path = tmp_path / "options.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_round_trip_through_json(tmp_path: Path) -> None:
    assert ElmoOptions.from_json(write(tmp_path, TINY_OPTIONS.to_dict())) == TINY_OPTIONS


def test_derived_sizes() -> None:
    assert TINY_OPTIONS.n_filters == 24
    assert TINY_OPTIONS.output_dim == 16
    assert TINY_OPTIONS.num_output_layers == 3


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match=r"nowhere\.json"):
        ElmoOptions.from_json("nowhere.json")


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ElmoFileError, match=r"options\.json: not a valid JSON"):
        ElmoOptions.from_json(write(tmp_path, "{not json"))


@pytest.mark.parametrize(
    ("section", "field", "dotted"),
    [
        ("lstm", "dim", "lstm.dim"),
        ("lstm", "projection_dim", "lstm.projection_dim"),
        ("char_cnn", "filters", "char_cnn.filters"),
    ],
)
def test_missing_field_is_named(tmp_path: Path, section: str, field: str, dotted: str) -> None:
    raw = TINY_OPTIONS.to_dict()
    del raw[section][field]
    with pytest.raises(ElmoFileError, match=f"missing field '{dotted}'"):
        ElmoOptions.from_json(write(tmp_path, raw))


@pytest.mark.parametrize(
    ("section", "field", "value", "message"),
    [
        ("lstm", "dim", "64", "'lstm.dim' is '64'; expected int"),
        ("lstm", "n_layers", 0, "'lstm.n_layers' is 0; expected a positive integer"),
        ("char_cnn", "activation", "gelu", "'char_cnn.activation' is 'gelu'"),
        ("char_cnn", "filters", [[1, 4], [2]], r"'char_cnn.filters\[1\]' is \[2\]"),
        ("lstm", "cell_clip", -1, "'lstm.cell_clip' is -1"),
        ("char_cnn", "n_characters", 100, "'char_cnn.n_characters' is 100"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, section: str, field: str, value: object, message: str) -> None:
    raw = TINY_OPTIONS.to_dict()
    raw[section][field] = value
    with pytest.raises(ElmoFileError, match=message):
        ElmoOptions.from_json(write(tmp_path, raw))


def test_clip_zero_or_null_means_no_clipping(tmp_path: Path) -> None:
    raw = TINY_OPTIONS.to_dict()
    raw["lstm"]["cell_clip"] = None
    raw["lstm"]["proj_clip"] = 0
    options = ElmoOptions.from_json(write(tmp_path, raw))
    assert options.cell_clip == 0.0 and options.proj_clip == 0.0


@pytest.mark.parametrize(
    ("field", "text", "found"),
    [
        ("cell_clip", "NaN", "nan"),
        ("cell_clip", "Infinity", "inf"),
        ("proj_clip", "-Infinity", "-inf"),
        ("proj_clip", "1e999", "inf"),  # a finite-looking literal that overflows
    ],
)
def test_non_finite_numbers_are_refused(tmp_path: Path, field: str, text: str, found: str) -> None:
    raw = TINY_OPTIONS.to_dict()
    raw["lstm"][field] = "PLACEHOLDER"
    path = write(tmp_path, json.dumps(raw).replace('"PLACEHOLDER"', text))
    with pytest.raises(ElmoFileError) as info:
        ElmoOptions.from_json(path)
    assert str(info.value) == f"{path}: 'lstm.{field}' is {found}; expected a finite number"
    with pytest.raises(ElmoFileError, match=f"'lstm.{field}' is {found}; expected a finite number"):
        ElmoOptions.from_dict(json.loads(path.read_text()))


@pytest.mark.parametrize("slots", [1, 2])
def test_too_few_character_slots_for_the_markers_are_refused(tmp_path: Path, slots: int) -> None:
    raw = TINY_OPTIONS.to_dict()
    raw["char_cnn"]["max_characters_per_token"] = slots
    raw["char_cnn"]["filters"] = [[1, 4]]  # no filter wider than the slots: only the markers do not fit
    with pytest.raises(
        ElmoFileError, match=rf"options\.json: 'char_cnn\.max_characters_per_token' is {slots}; expected >= 3"
    ):
        ElmoOptions.from_json(write(tmp_path, raw))
    with pytest.raises(ElmoFileError, match=r"'char_cnn\.max_characters_per_token' is 2"):
        dataclasses.replace(TINY_OPTIONS, filters=((1, 4),), max_characters_per_token=2)


def test_three_character_slots_are_enough_to_embed(tmp_path: Path) -> None:
    options = dataclasses.replace(TINY_OPTIONS, filters=((1, 4), (3, 4)), max_characters_per_token=3)
    assert ElmoOptions.from_json(write(tmp_path, options.to_dict())) == options
    bilm = random_bilm(options)
    ids = batch_to_ids([["<S>", "a", "abcdef", ""]], max_characters=3)  # (1, 4, 3): [BOW, char, EOW]
    output = bilm(ids)
    assert output.layers.shape == (3, 1, 4, 16) and torch.isfinite(output.layers).all()


def test_deeply_nested_json_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[" * 200_000 + "]" * 200_000)
    with pytest.raises(ElmoFileError, match=r"options\.json: not a valid options file \(JSON nested too deeply"):
        ElmoOptions.from_json(path)
