import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from flair_elmo_modes.bilm import ElmoFileError, load_bilm
from flair_elmo_modes.cli import train_command as command
from flair_elmo_modes.training import TrainConfig
from flair_elmo_modes.training.config import SMALL_OPTIONS

# one torch thread in this module, as in the training tests (the corpus_files fixture: tests/cli/conftest.py)
from tests.training.conftest import one_thread  # noqa: F401

pytestmark = pytest.mark.slow


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="flair-elmo train")
    command.add_arguments(parser)
    return parser.parse_args(list(argv))


EFML = Path(__file__).parent.parent / "fixtures" / "efml" / "char_word"
TINY = ("--char-dim", "4", "--filters", "1:4,2:8", "--cell-dim", "16", "--projection-dim", "8", "--no-progress")


def test_run_trains_exports_and_prints_the_result(
    corpus_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    train_file, dev_file = corpus_files
    args = parse(str(train_file), "--dev", str(dev_file), "--output", str(tmp_path), "--max-steps", "4", *TINY)
    assert command.run(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 4 and result["stopped_by"] == "max_steps"
    bilm = load_bilm(tmp_path / "model" / "options.json", tmp_path / "model" / "weights.hdf5")
    assert bilm.options.filters == ((1, 4), (2, 8)) and bilm.options.cell_dim == 16
    assert bilm.options.projection_dim == 8 and bilm.options.cell_clip == 3.0


def test_defaults_are_the_small_architecture(tmp_path: Path) -> None:
    config = command.config_from_args(parse("train.txt", "--output", str(tmp_path)))
    assert config.options is None  # no size flag: TrainConfig's default, the small architecture
    assert SMALL_OPTIONS.n_filters == 512 and SMALL_OPTIONS.cell_dim == 512
    assert SMALL_OPTIONS.projection_dim == 128 and SMALL_OPTIONS.n_layers == 2
    assert config.cutoffs == (2000, 10000) and config.share_softmax and config.resume
    assert config.num_threads is None  # TrainConfig's: torch's own choice


def test_options_file_sets_the_architecture(tiny_model_files: tuple[Path, Path], tmp_path: Path) -> None:
    options_file, _ = tiny_model_files
    config = command.config_from_args(parse("t.txt", "-o", str(tmp_path), "--options", str(options_file)))
    assert config.options.cell_dim == 24 and config.options.n_highway == 2


def test_bad_arguments_give_clear_errors(corpus_files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--filters: expected width:count"):
        command.config_from_args(parse("t.txt", "-o", str(tmp_path), "--filters", "1-4"))
    with pytest.raises(ValueError, match="--cutoffs: expected comma-separated integers"):
        command.config_from_args(parse("t.txt", "-o", str(tmp_path), "--cutoffs", "a,b"))
    with pytest.raises(ValueError, match="--options gives the architecture: drop --cell-dim, --clip"):
        command.config_from_args(
            parse("t.txt", "-o", str(tmp_path), "--options", "o.json", "--clip", "1", "--cell-dim", "8")
        )
    with pytest.raises(ElmoFileError, match=r"'lstm\.dim' is 0"):
        command.config_from_args(parse("t.txt", "-o", str(tmp_path), "--cell-dim", "0"))
    with pytest.raises(FileNotFoundError, match="training text not found"):
        command.run(parse(str(tmp_path / "missing.txt"), "-o", str(tmp_path / "out"), *TINY))


def test_every_cli_default_is_the_train_config_default(tmp_path: Path) -> None:
    config = command.config_from_args(parse("train.txt", "--output", str(tmp_path)))
    library = TrainConfig(train_files="train.txt", output_dir=tmp_path)
    for field in dataclasses.fields(TrainConfig):
        assert getattr(config, field.name) == getattr(library, field.name), field.name
    # every other field has an option: none is fixed behind the user's back
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    destinations = {action.dest for action in parser._actions}
    assert {field.name for field in dataclasses.fields(TrainConfig)} - destinations == {"output_dir"}  # --output


def test_options_take_the_types_of_the_fields(tmp_path: Path) -> None:
    args = parse("t.txt", "-o", str(tmp_path), "--threads", "3", "--max-minutes", "1.5", "--max-sentence-tokens", "50")
    config = command.config_from_args(args)
    assert (config.num_threads, config.max_minutes, config.max_sentence_tokens) == (3, 1.5, 50)
    assert config.cutoffs == (2000, 10000) and config.progress is True
    assert command.config_from_args(parse("t.txt", "-o", str(tmp_path), "--quiet")).progress is False
    with pytest.raises(SystemExit):
        parse("t.txt", "-o", str(tmp_path), "--threads", "two")


def test_huge_batch_sizes_train(corpus_files: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    args = parse(str(corpus_files[0]), "-o", str(tmp_path), "--max-steps", "1", "--batch-size", str(10**18), *TINY)
    assert command.run(args) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 1  # one batch of every sentence


def test_bad_input_is_one_error_line_before_anything_is_written(
    corpus_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from flair_elmo_modes.cli.main import main

    train_file = str(corpus_files[0])
    bad_shard = tmp_path / "bad.txt"
    bad_shard.write_bytes(b"fine\nstill fine\n\xc3\x28 broken\n")
    no_specials = tmp_path / "vocab.txt"
    no_specials.write_text("the\ncat\n", encoding="utf-8")
    base = tmp_path / "base"
    assert main(["train", train_file, "-o", str(base), "--max-steps", "1", *TINY]) == 0
    capsys.readouterr()
    cases = [
        ([str(tmp_path / "shards-*.txt")], "shards-*.txt: the pattern matches no file"),
        ([str(bad_shard)], "bad.txt: line 3, column 1: invalid UTF-8 (bytes c3)"),
        ([train_file, "--vocab", str(no_specials)], "vocab.txt: the first lines are ['the', 'cat']"),
        ([train_file, "--init-from", str(tmp_path / "nothing")], "--init-from"),
        ([train_file, "--init-from", str(EFML)], f"--init-from {EFML}: an ELMoForManyLangs model; training starts"),
        (
            [train_file, "--init-from", str(EFML), "--cell-dim", "32"],
            f"--init-from {EFML}: an ELMoForManyLangs model; training starts",
        ),
        (
            [train_file, "--init-from", str(base / "model"), "--cell-dim", "32"],
            f"--init-from {base / 'model'} fixes the architecture: --cell-dim 32 vs 16",
        ),
    ]
    for k, (args, message) in enumerate(cases):
        output = tmp_path / f"out{k}"
        code = main(["train", *args, "-o", str(output), "--max-steps", "1", "--no-progress"])
        error = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(error) == 1 and error[0].startswith("error: ") and message in error[0], error
        assert not output.exists()
    # a checkpoint of another configuration
    code = main(["train", train_file, "-o", str(base), "--max-steps", "2", *TINY, "--projection-dim", "4"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "was made with a different config (options: checkpoint" in error[-1]
