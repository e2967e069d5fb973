"""A plain float64 numpy ELMo biLM written from bilm-tf's formulas, one sentence at a time.

It reads the TensorFlow arrays directly (no conversion to PyTorch conventions), so it checks
the conversions in ``flair_elmo_modes.bilm.hdf5`` as well as the model. Deliberately slow and
obvious: loops over tokens and time steps.
"""

from __future__ import annotations

import numpy as np

from flair_elmo_modes.bilm.characters import token_to_ids
from flair_elmo_modes.bilm.options import ElmoOptions


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _encode_token(ids: list[int], w: dict[str, np.ndarray], options: ElmoOptions) -> np.ndarray:
    # bilm-tf's char_embed has no padding row: our shifted id i is its row i - 1.
    chars = np.stack([w["char_embed"][i - 1] for i in ids])  # (max_chars, emb)
    features = []
    for f, (width, _) in enumerate(options.filters):
        kernel, bias = w[f"CNN/W_cnn_{f}"][0], w[f"CNN/b_cnn_{f}"]  # (width, emb, count)
        windows = [np.einsum("ke,ken->n", chars[t : t + width], kernel) + bias for t in range(len(ids) - width + 1)]
        features.append(np.max(windows, axis=0))
    x = np.concatenate(features)
    x = np.tanh(x) if options.activation == "tanh" else np.maximum(x, 0.0)
    for k in range(options.n_highway):
        g = f"CNN_high_{k}"
        carry = _sigmoid(x @ w[f"{g}/W_carry"] + w[f"{g}/b_carry"])
        transform = np.maximum(x @ w[f"{g}/W_transform"] + w[f"{g}/b_transform"], 0.0)
        x = carry * transform + (1.0 - carry) * x
    return x @ w["CNN_proj/W_proj"] + w["CNN_proj/b_proj"]


def _run_lstm(
    inputs: list[np.ndarray], w: dict[str, np.ndarray], prefix: str, options: ElmoOptions
) -> list[np.ndarray]:
    kernel, bias, projection = w[f"{prefix}/W_0"], w[f"{prefix}/B"], w[f"{prefix}/W_P_0"]
    cell = options.cell_dim
    h, c = np.zeros(options.projection_dim), np.zeros(cell)
    outputs = []
    for x in inputs:
        z = np.concatenate([x, h]) @ kernel + bias
        i, j, f, o = (z[n * cell : (n + 1) * cell] for n in range(4))  # TensorFlow's gate order
        c = _sigmoid(f + 1.0) * c + _sigmoid(i) * np.tanh(j)  # forget_bias = 1
        if options.cell_clip:
            c = np.clip(c, -options.cell_clip, options.cell_clip)
        h = (_sigmoid(o) * np.tanh(c)) @ projection
        if options.proj_clip:
            h = np.clip(h, -options.proj_clip, options.proj_clip)
        outputs.append(h)
    return outputs


def reference_layers(tokens: list[str], weights: dict[str, np.ndarray], options: ElmoOptions) -> np.ndarray:
    """``(n_layers + 1, n_tokens, 2 * projection_dim)`` float64 layers of one sentence."""
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    framed = ["<S>", *tokens, "</S>"]
    token_vectors = [_encode_token(token_to_ids(t, options.max_characters_per_token), w, options) for t in framed]
    layers = [np.concatenate([token_vectors, token_vectors], axis=-1)]
    forward, backward = token_vectors, token_vectors[::-1]
    for k in range(options.n_layers):
        new_forward = _run_lstm(forward, w, f"RNN_0/RNN/MultiRNNCell/Cell{k}/LSTMCell", options)
        new_backward = _run_lstm(backward, w, f"RNN_1/RNN/MultiRNNCell/Cell{k}/LSTMCell", options)
        if options.use_skip_connections and k > 0:
            new_forward = [a + b for a, b in zip(new_forward, forward, strict=True)]
            new_backward = [a + b for a, b in zip(new_backward, backward, strict=True)]
        forward, backward = new_forward, new_backward
        layers.append(np.concatenate([forward, backward[::-1]], axis=-1))
    return np.stack(layers)[:, 1:-1]
