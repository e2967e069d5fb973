from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from flair_elmo_modes.bilm import ElmoFileError, load_bilm
from flair_elmo_modes.bilm.hdf5 import expected_shapes, read_weights, state_dict_to_tf, write_options
from tests.helpers import FLOAT32_EPS, TINY_OPTIONS, random_bilm, tiny_options, write_random_model


def test_written_file_has_the_official_datasets(tiny_model_files: tuple[Path, Path]) -> None:
    _, weight_file = tiny_model_files
    with h5py.File(weight_file) as handle:
        found = {}
        handle.visititems(lambda name, obj: found.update({name: obj.shape}) if isinstance(obj, h5py.Dataset) else None)
        assert all(handle[name].dtype == np.float32 for name in found)
    assert found == expected_shapes(TINY_OPTIONS)
    assert found["RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_0"] == (16, 96)
    assert found["char_embed"] == (261, 4)


def test_save_load_round_trip_is_exact(tmp_path: Path) -> None:
    bilm = random_bilm(seed=3)
    options_file, weight_file = write_random_model(tmp_path, seed=3)
    loaded = load_bilm(options_file, weight_file)
    cell = TINY_OPTIONS.cell_dim
    for name, value in bilm.state_dict().items():
        if not name.startswith("lstm.bias"):
            torch.testing.assert_close(loaded.state_dict()[name], value, rtol=0, atol=0, msg=name)
            continue
        # Only the forget gate's bias passes through TF's forget_bias: fl(fl(b - 1) + 1), two float32
        # roundings, of |b - 1| and |b| at most half an ulp each: within FLOAT32_EPS * (|b| + 1/2).
        forget = slice(cell, 2 * cell)
        got = loaded.state_dict()[name]
        others = torch.ones(value.shape[-1], dtype=torch.bool)
        others[forget] = False
        torch.testing.assert_close(got[..., others], value[..., others], rtol=0, atol=0, msg=name)
        torch.testing.assert_close(
            got[..., forget], value[..., forget], rtol=FLOAT32_EPS, atol=FLOAT32_EPS / 2, msg=name
        )


def test_tf_conventions_of_the_conversion() -> None:
    """Gate order, forget bias, highway carry sign and transposes, each against its definition."""
    bilm = random_bilm(seed=1)
    arrays = state_dict_to_tf(bilm)
    cell = TINY_OPTIONS.cell_dim
    tf_bias = arrays["RNN_0/RNN/MultiRNNCell/Cell0/LSTMCell/B"]
    torch_bias = bilm.lstm.bias_l0[0].detach().numpy()
    # TF (i, j, f, o) vs ours (i, f, j, o); TF's forget gate has +1 at run time.
    np.testing.assert_array_equal(tf_bias[:cell], torch_bias[:cell])  # copied
    np.testing.assert_array_equal(tf_bias[cell : 2 * cell], torch_bias[2 * cell : 3 * cell])
    # fl(fl(b - 1) + 1): two float32 roundings, within FLOAT32_EPS * (|b| + 1/2) of b
    forget = torch_bias[cell : 2 * cell]
    np.testing.assert_allclose(tf_bias[2 * cell : 3 * cell] + 1.0, forget, rtol=FLOAT32_EPS, atol=FLOAT32_EPS / 2)
    kernel = arrays["RNN_1/RNN/MultiRNNCell/Cell1/LSTMCell/W_0"]  # rows [input; hidden]
    np.testing.assert_array_equal(kernel[:8, 3 * cell :].T, bilm.lstm.weight_ih_l1[1, 3 * cell :].detach().numpy())
    np.testing.assert_array_equal(kernel[8:, :cell].T, bilm.lstm.weight_hh_l1[1, :cell].detach().numpy())
    highway = bilm.char_encoder.highway.layers[0]
    np.testing.assert_array_equal(arrays["CNN_high_0/W_carry"], -highway.weight[24:].detach().numpy().T)
    np.testing.assert_array_equal(
        arrays["CNN/W_cnn_3"][0, :, :, 2], bilm.char_encoder.convolutions[3].weight[2].detach().numpy().T
    )


def corrupt(weight_file: Path, tmp_path: Path, edit) -> Path:
    target = tmp_path / "weights.hdf5"
    target.write_bytes(weight_file.read_bytes())
    with h5py.File(target, "a") as handle:
        edit(handle)
    return target


def test_wrong_shape_names_file_dataset_and_shapes(tiny_model_files: tuple[Path, Path], tmp_path: Path) -> None:
    options_file, weight_file = tiny_model_files
    name = "RNN_0/RNN/MultiRNNCell/Cell1/LSTMCell/W_0"

    def edit(handle: h5py.File) -> None:
        del handle[name]
        handle.create_dataset(name, data=np.zeros((16, 80), np.float32))

    bad = corrupt(weight_file, tmp_path, edit)
    with pytest.raises(ElmoFileError) as info:
        load_bilm(options_file, bad)
    message = str(info.value)
    assert str(bad) in message and name in message and "(16, 80)" in message and "(16, 96)" in message
    assert "lstm.dim=24" in message


def test_missing_dataset_is_named(tiny_model_files: tuple[Path, Path], tmp_path: Path) -> None:
    options_file, weight_file = tiny_model_files
    bad = corrupt(weight_file, tmp_path, lambda handle: handle.__delitem__("CNN_high_1/b_carry"))
    with pytest.raises(ElmoFileError, match="'CNN_high_1/b_carry' is missing"):
        load_bilm(options_file, bad)


def test_weights_of_another_configuration(tiny_model_files: tuple[Path, Path], tmp_path: Path) -> None:
    _, weight_file = tiny_model_files
    other_options = tmp_path / "options.json"
    write_options(other_options, tiny_options(n_layers=3))
    with pytest.raises(ElmoFileError, match="RNN_0/RNN/MultiRNNCell/Cell2/LSTMCell/W_0' is missing"):
        load_bilm(other_options, weight_file)
    write_options(other_options, tiny_options(projection_dim=16))
    with pytest.raises(ElmoFileError, match=r"'CNN_proj/W_proj' has shape \(24, 8\).*expects \(24, 16\)"):
        load_bilm(other_options, weight_file)


def test_missing_weight_file(tiny_model_files: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.hdf5"):
        load_bilm(tiny_model_files[0], tmp_path / "absent.hdf5")


def test_not_hdf5(tiny_model_files: tuple[Path, Path], tmp_path: Path) -> None:
    bogus = tmp_path / "weights.hdf5"
    bogus.write_text("this is not HDF5")
    with pytest.raises(ElmoFileError, match="not a readable HDF5 file"):
        read_weights(bogus, TINY_OPTIONS)


def test_truncated_file(tiny_model_files: tuple[Path, Path], tmp_path: Path) -> None:
    data = tiny_model_files[1].read_bytes()
    truncated = tmp_path / "weights.hdf5"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ElmoFileError, match=str(truncated)):
        read_weights(truncated, TINY_OPTIONS)


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    from flair_elmo_modes.bilm.hdf5 import write_weights

    bilm = random_bilm()
    target = tmp_path / "weights.hdf5"
    target.write_bytes(b"old")
    with torch.no_grad():
        bilm.lstm.register_buffer("bogus", torch.zeros(1))  # state_dict_to_tf ignores it: write succeeds
    write_weights(target, bilm)
    assert target.read_bytes() != b"old"
    with pytest.raises(FileNotFoundError):
        write_weights(tmp_path / "missing_dir" / "weights.hdf5", bilm)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.hdf5"]


def replace_dataset(name: str, data: np.ndarray):
    def edit(handle: h5py.File) -> None:
        del handle[name]
        handle.create_dataset(name, data=data)

    return edit


@pytest.mark.parametrize(
    ("value", "dtype", "found"),
    [
        (np.nan, np.float32, "nan"),
        (np.inf, np.float32, "inf"),
        (-np.inf, np.float32, "-inf"),
        (1e300, np.float64, "inf"),  # finite in the file, infinite once cast to float32
    ],
)
def test_non_finite_weights_are_refused(
    value: float, dtype: type, found: str, tiny_model_files: tuple[Path, Path], tmp_path: Path
) -> None:
    options_file, weight_file = tiny_model_files
    name = "CNN_proj/b_proj"
    with h5py.File(weight_file) as handle:
        data = np.asarray(handle[name][...], dtype=dtype)
    data[3] = value
    bad = corrupt(weight_file, tmp_path, replace_dataset(name, data))
    with pytest.raises(ElmoFileError) as info:
        load_bilm(options_file, bad)
    message = str(info.value)
    assert message.startswith(f"{bad}: '{name}' holds 1 non-finite value(s) (first: {found} at index (3,)")


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.bool_, np.complex64])
def test_non_float_datasets_are_refused_not_cast(
    dtype: type, tiny_model_files: tuple[Path, Path], tmp_path: Path
) -> None:
    options_file, weight_file = tiny_model_files
    name = "CNN_high_0/W_carry"
    bad = corrupt(weight_file, tmp_path, replace_dataset(name, np.ones((24, 24), dtype=dtype)))
    with pytest.raises(ElmoFileError) as info:
        load_bilm(options_file, bad)
    assert str(info.value) == f"{bad}: '{name}' has dtype {np.dtype(dtype)}; expected floating point (float32)"


def test_float64_and_float16_datasets_load(tiny_model_files: tuple[Path, Path], tmp_path: Path) -> None:
    weight_file = tiny_model_files[1]
    with h5py.File(weight_file) as handle:
        carry = handle["CNN_high_0/W_carry"][...]
        bias = handle["CNN_proj/b_proj"][...]

    def edit(handle: h5py.File) -> None:
        replace_dataset("CNN_high_0/W_carry", carry.astype(np.float64))(handle)
        replace_dataset("CNN_proj/b_proj", bias.astype(np.float16))(handle)

    loaded = read_weights(corrupt(weight_file, tmp_path, edit), TINY_OPTIONS)
    np.testing.assert_array_equal(loaded["CNN_high_0/W_carry"], carry)
    np.testing.assert_array_equal(loaded["CNN_proj/b_proj"], bias.astype(np.float16).astype(np.float32))
