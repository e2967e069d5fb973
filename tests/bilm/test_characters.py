import torch

from flair_elmo_modes.bilm.characters import batch_to_ids, token_to_ids

BOW, EOW, PAD = 259, 260, 261  # shifted by +1


def test_ascii_token_is_framed_bytes_plus_one() -> None:
    assert token_to_ids("ab") == [BOW, 98, 99, EOW] + [PAD] * 46


def test_empty_token_is_an_empty_word() -> None:
    assert token_to_ids("") == [BOW, EOW] + [PAD] * 48


def test_sentence_marker_tokens_get_marker_ids() -> None:
    assert token_to_ids("<S>") == [BOW, 257, EOW] + [PAD] * 47
    assert token_to_ids("</S>") == [BOW, 258, EOW] + [PAD] * 47


def test_multibyte_characters_are_utf8_bytes() -> None:
    assert token_to_ids("é")[:4] == [BOW, 0xC3 + 1, 0xA9 + 1, EOW]
    assert token_to_ids("🙂")[:6] == [BOW, 0xF0 + 1, 0x9F + 1, 0x99 + 1, 0x82 + 1, EOW]


def test_tokens_are_cut_at_48_bytes_even_inside_a_character() -> None:
    for n_bytes in (47, 48, 49, 52, 200):
        ids = token_to_ids("x" * n_bytes)
        kept = min(n_bytes, 48)
        assert len(ids) == 50
        assert ids[1 : kept + 1] == [ord("x") + 1] * kept
        assert ids[kept + 1] == EOW
    cut = token_to_ids("x" * 47 + "é")  # the cut keeps the first byte of "é" only
    assert cut[48] == 0xC3 + 1 and cut[49] == EOW


def test_batch_is_padded_with_zero_rows() -> None:
    ids = batch_to_ids([["a", "b"], ["c"], []])
    assert ids.shape == (3, 2, 50) and ids.dtype == torch.long
    assert torch.equal(ids[1, 1], torch.zeros(50, dtype=torch.long))
    assert torch.equal(ids[2], torch.zeros(2, 50, dtype=torch.long))
    assert ids[0, 1].tolist() == token_to_ids("b")


def test_empty_batch() -> None:
    assert batch_to_ids([]).shape == (0, 0, 50)
