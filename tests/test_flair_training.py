"""End to end with Flair's ModelTrainer: train, save, reload in a fresh process without weight files."""

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from flair.data import Sentence
from flair.datasets import ClassificationCorpus, ColumnCorpus
from flair.embeddings import DocumentPoolEmbeddings
from flair.models import SequenceTagger, TextClassifier
from flair.trainers import ModelTrainer

from flair_elmo_modes import ELMoEmbeddings
from tests.helpers import write_random_model

pytestmark = pytest.mark.slow

WORDS = {"DET": ["the", "a", "every"], "NOUN": ["cat", "dog", "cell", "phone"], "VERB": ["sees", "likes", "eats"]}
PATTERNS = [["DET", "NOUN", "VERB", "DET", "NOUN"], ["DET", "NOUN", "VERB"], ["NOUN", "VERB", "NOUN"]]
PROBE = ["the cat likes a phone", "every cell eats the dog", "dog sees cat"]


def write_corpus(directory: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    directory.mkdir()
    for split, count in (("train", 150), ("dev", 10), ("test", 10)):
        lines = []
        for _ in range(count):
            for tag in rng.choice(PATTERNS):
                lines.append(f"{rng.choice(WORDS[tag])} {tag}")
            lines.append("")
        (directory / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def predict(tagger: SequenceTagger) -> list[list[str]]:
    sentences = [Sentence(text) for text in PROBE]
    tagger.predict(sentences)
    return [[token.get_label("pos").value for token in sentence] for sentence in sentences]


LOAD_AND_PREDICT = """
import json, sys
import flair_elmo_modes  # registers ELMoEmbeddings with Flair
from flair.data import Sentence
from flair.models import SequenceTagger
tagger = SequenceTagger.load(sys.argv[1])
sentences = [Sentence(text) for text in json.loads(sys.argv[2])]
tagger.predict(sentences)
print(json.dumps([[t.get_label("pos").value for t in s] for s in sentences]))
"""


@pytest.mark.parametrize("mode", ["all", "top", "average", "mix"])
def test_sequence_tagger_round_trip(tmp_path: Path, mode: str) -> None:
    model_dir = tmp_path / "elmo"
    write_random_model(model_dir, seed=11)
    write_corpus(tmp_path / "corpus")
    corpus = ColumnCorpus(tmp_path / "corpus", {0: "text", 1: "pos"})
    dictionary = corpus.make_label_dictionary("pos", add_unk=False)
    embeddings = ELMoEmbeddings(model_dir, embedding_type=mode)
    tagger = SequenceTagger(
        embeddings=embeddings, tag_dictionary=dictionary, tag_type="pos", hidden_size=16, use_crf=False
    )
    ModelTrainer(tagger, corpus).train(
        tmp_path / "run", max_epochs=10, mini_batch_size=8, learning_rate=0.1, create_file_logs=False
    )
    if mode == "mix":
        weights, gamma = tagger.embeddings.mix_weights()
        # The mix trained: it starts at weights fl(1/3) (within 2e-8 of 1/3) and gamma exactly 1; 10
        # epochs at learning rate 0.1 move them by far more than the 1e-6 asked, 50x that rounding.
        assert weights != pytest.approx([1 / 3] * 3, abs=1e-6) or gamma != pytest.approx(1.0, abs=1e-6)
    expected = predict(tagger)
    assert len({tag for tags in expected for tag in tags}) > 1, "the tagger learned nothing"
    model_file = tmp_path / "tagger.pt"
    tagger.save(model_file)
    shutil.rmtree(model_dir)  # the saved tagger must not need the ELMo files
    reloaded = SequenceTagger.load(model_file)
    assert predict(reloaded) == expected
    assert not reloaded.embeddings.bilm.training
    fresh = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(model_file), json.dumps(PROBE)],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert json.loads(fresh.stdout.strip().splitlines()[-1]) == expected
    if mode == "mix":
        (weights, gamma), (reloaded_weights, reloaded_gamma) = (
            tagger.embeddings.mix_weights(),
            reloaded.embeddings.mix_weights(),
        )
        # the saved parameters are the trained ones, bitwise; the same softmax of them: bitwise
        assert reloaded_weights == weights and reloaded_gamma == gamma


def test_text_classifier_over_document_pool_trains_and_saves(tmp_path: Path) -> None:
    model_dir = tmp_path / "elmo"
    write_random_model(model_dir, seed=12)
    data = tmp_path / "classes"
    data.mkdir()
    rng = random.Random(1)
    for split, count in (("train", 24), ("dev", 6), ("test", 6)):
        lines = []
        for _ in range(count):
            label = rng.choice(["animal", "device"])
            nouns = ["cat", "dog"] if label == "animal" else ["phone", "cell"]
            lines.append(f"__label__{label} the {rng.choice(nouns)} {rng.choice(WORDS['VERB'])} a {rng.choice(nouns)}")
        (data / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = ClassificationCorpus(data, label_type="topic")
    document = DocumentPoolEmbeddings([ELMoEmbeddings(model_dir, embedding_type="top")])
    classifier = TextClassifier(document, label_type="topic", label_dictionary=corpus.make_label_dictionary("topic"))
    ModelTrainer(classifier, corpus).train(tmp_path / "run", max_epochs=2, mini_batch_size=8, create_file_logs=False)
    sentence = Sentence("the cat likes a dog")
    classifier.predict(sentence)
    shutil.rmtree(model_dir)
    reloaded = TextClassifier.load(tmp_path / "run" / "final-model.pt")
    again = Sentence("the cat likes a dog")
    reloaded.predict(again)
    assert again.get_label("topic").value == sentence.get_label("topic").value
    # the saved classifier's parameters, bitwise, on the same sentence alone, with the same kernels
    # and threads: the same computation, so bitwise the same score
    assert again.get_label("topic").score == sentence.get_label("topic").score
