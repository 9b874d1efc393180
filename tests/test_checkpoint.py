"""Checkpoints: round trip, integrity errors, and the shipped checkpoints against their model cards."""

import json
import shutil

import pytest
import torch

from minitransformer import CheckpointError, MiniTransformer, TransformerConfig, load_checkpoint, load_pretrained, model_card
from minitransformer.checkpoint import CHECKPOINT_DIR
from minitransformer.pretrain import read_text_file, token_stream, validation_loss
from minitransformer.tokenizer import EOS, SEP


def small_model():
    torch.manual_seed(0)
    return MiniTransformer(TransformerConfig(vocab_size=40, max_seq_len=16, d_model=8, n_layers=1, n_heads=2, d_ff=16))


def test_round_trip_is_exact(tmp_path):
    from minitransformer import save_checkpoint

    model = small_model()
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"note": "test"})
    loaded = load_checkpoint(path)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert json.loads((tmp_path / "m.json").read_text())["note"] == "test"


def test_corrupted_file_is_detected(tmp_path):
    from minitransformer import save_checkpoint

    path = save_checkpoint(small_model(), tmp_path / "m.safetensors")
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside a weight
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="sha256|corrupted"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(path, verify=False)


def test_config_mismatch_and_missing_files(tmp_path):
    from minitransformer import save_checkpoint

    path = save_checkpoint(small_model(), tmp_path / "m.safetensors")
    other = TransformerConfig(vocab_size=40, max_seq_len=16, d_model=8, n_layers=2, n_heads=2, d_ff=16)
    with pytest.raises(CheckpointError, match="different config.*n_layers"):
        load_checkpoint(path, config=other)
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_checkpoint(tmp_path / "absent.safetensors")
    (tmp_path / "m.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="choose one of"):
        load_pretrained("t5")


def test_card_config_that_does_not_fit_the_weights(tmp_path):
    from minitransformer import save_checkpoint

    path = save_checkpoint(small_model(), tmp_path / "m.safetensors")
    card = json.loads((tmp_path / "m.json").read_text())
    card["config"]["d_ff"] = 32  # the card now disagrees with the tensors' shapes
    (tmp_path / "m.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ["gpt", "bert"])
def test_shipped_checkpoint_matches_its_model_card(name):
    """Re-measure the held-out loss with the card's protocol; it must match what the card says."""
    from minitransformer.world import generate_world, pretraining_corpus

    model, tokenizer = load_pretrained(name)
    card = model_card(name)
    assert (CHECKPOINT_DIR / f"{name}.safetensors").stat().st_size <= 10 * 1024 * 1024
    docs = pretraining_corpus(generate_world(card["seed"]), seed=card["seed"])
    val_stream = token_stream([d for i, d in enumerate(docs) if i % 50 == 0], tokenizer, EOS if name == "gpt" else SEP)
    measured = validation_loss(model, val_stream, model.config.mode, tokenizer)
    assert measured == pytest.approx(card["validation_loss"], abs=2e-3)


def test_corrupted_shipped_checkpoint_is_refused(tmp_path):
    for f in CHECKPOINT_DIR.iterdir():
        shutil.copy(f, tmp_path / f.name)
    weights = tmp_path / "gpt.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_pretrained("gpt", checkpoint_dir=tmp_path)


def test_pretraining_text_file_input(tmp_path):
    text = tmp_path / "mine.txt"
    text.write_text("\n\n".join(f"Paragraph {i} about the sea." for i in range(12)))
    assert len(read_text_file(text)) == 12
    (tmp_path / "short.txt").write_text("one line")
    with pytest.raises(ValueError, match="at least 10"):
        read_text_file(tmp_path / "short.txt")
    with pytest.raises(FileNotFoundError):
        read_text_file(tmp_path / "absent.txt")


def test_save_is_atomic(tmp_path, monkeypatch):
    """A save that fails half-way keeps the previous files and leaves no temporary ones."""
    from minitransformer import checkpoint, save_checkpoint

    path = save_checkpoint(small_model(), tmp_path / "m.safetensors", {"note": "first"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "sha256_of", crash)  # fails after the weights were staged
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(MiniTransformer(small_model().config), path, {"note": "second"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_any_named_checkpoint_loads_and_old_cards_still_work(tmp_path):
    """load_pretrained(name, folder) for a user's checkpoint; a card without the newer fields
    (tokenizer hash, corpus details, command) loads as before, like the shipped ones."""
    from minitransformer import save_checkpoint

    shutil.copy(CHECKPOINT_DIR / "tokenizer.json", tmp_path / "tokenizer.json")
    config = TransformerConfig(vocab_size=2048, max_seq_len=16, d_model=8, n_layers=1, n_heads=2, d_ff=16)
    save_checkpoint(MiniTransformer(config), tmp_path / "austen.safetensors", {"corpus": "text file austen.txt"})
    assert "tokenizer" not in json.loads((tmp_path / "austen.json").read_text())
    model, tokenizer = load_pretrained("austen", tmp_path)
    assert model.config == config and tokenizer.get_vocab_size() == 2048
    with pytest.raises(ValueError, match=r"Unknown pretrained model 'emma' in .*; choose one of \('austen',\)"):
        load_pretrained("emma", tmp_path)
    with pytest.raises(ValueError, match=r"choose one of \('gpt', 'bert', 'gpt_d16', 'gpt_d32'\)"):
        load_pretrained("austen")  # the shipped folder lists what it holds (chapter 6 ships the two small ones)
