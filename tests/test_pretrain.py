"""The pretraining CLI: a user's own text file, determinism, and clear errors."""

import json

import pytest

from minitransformer import load_checkpoint
from minitransformer.pretrain import main


def write_corpus(path):
    sentences = [f"The {c} cat sat on the {p} mat near the {t} tree. It was {w}." for c in ("grey", "black", "white", "ginger")
                 for p in ("red", "blue", "green") for t in ("old", "tall", "young") for w in ("day", "night", "noon")]
    path.write_text("\n\n".join(sentences * 3))
    return path


@pytest.mark.parametrize("mode", ["gpt", "bert"])
def test_pretrain_on_own_text_is_deterministic(tmp_path, mode):
    text = write_corpus(tmp_path / "corpus.txt")
    args = ["--text", str(text), "--mode", mode, "--steps", "3", "--batch-size", "4", "--d-model", "16",
            "--n-layers", "1", "--n-heads", "2", "--max-seq-len", "32", "--vocab-size", "300"]
    main(args + ["--out", str(tmp_path / "a")])
    main(args + ["--out", str(tmp_path / "b")])
    card_a = json.loads((tmp_path / "a" / f"{mode}.json").read_text())
    card_b = json.loads((tmp_path / "b" / f"{mode}.json").read_text())
    assert card_a["sha256"] == card_b["sha256"], "the same seed must give bit-identical weights"
    assert card_a["validation_loss"] == card_b["validation_loss"]
    assert card_a["corpus"] == "text file corpus.txt" and "probe_accuracy_test" not in card_a
    assert load_checkpoint(tmp_path / "a" / f"{mode}.safetensors").config.mode == mode


def test_pretrain_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--steps", "0"])
    assert "--steps" in capsys.readouterr().err
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00\x81" * 100)
    small = tmp_path / "small.txt"
    small.write_text("\n\n".join(f"Line {i}." for i in range(12)))
    with pytest.raises(ValueError, match="too few for windows"):
        main(["--text", str(small), "--out", str(tmp_path / "small_out"), "--steps", "1"])
    with pytest.raises(ValueError, match="not UTF-8"):
        main(["--text", str(tmp_path / "binary.txt"), "--out", str(tmp_path)])
