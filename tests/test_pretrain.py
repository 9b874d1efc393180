"""The pretraining CLI on a user's own text: safety of the shipped checkpoints, validation before
work, atomic writes, explicit tokenizer reuse, the model card, and one-line errors.

Each test named `test_row_*` covers one row of issue 9's table. Every test runs in its own
temporary folder, and an autouse fixture fails any test that changes the shipped checkpoints.
"""

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minitransformer import load_checkpoint, load_pretrained
from minitransformer import pretrain as pretrain_module
from minitransformer.checkpoint import CHECKPOINT_DIR
from minitransformer.pretrain import PretrainError, main, pretrain

TINY = ["--steps", "1", "--batch-size", "2", "--d-model", "16", "--n-layers", "1", "--n-heads", "2",
        "--max-seq-len", "32"]


def snapshot(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


SHIPPED_SNAPSHOT = snapshot(CHECKPOINT_DIR)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run in tmp_path (so default output folders land there) and guard the shipped checkpoints."""
    monkeypatch.chdir(tmp_path)
    yield
    assert snapshot(CHECKPOINT_DIR) == SHIPPED_SNAPSHOT, "a test changed minitransformer/checkpoints/"


def write_corpus(path, repeats=3):
    sentences = [f"The {c} cat sat on the {p} mat near the {t} tree. It was {w}." for c in ("grey", "black", "white", "ginger")
                 for p in ("red", "blue", "green") for t in ("old", "tall", "young") for w in ("day", "night", "noon")]
    path.write_text("\n\n".join(sentences * repeats))
    return path


def run_cli(args, capsys):
    """Run the CLI in-process; return (exit code, stderr). Success is exit code 0."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, *needles):
    lines = [line for line in err.splitlines() if line.startswith("pretrain: error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.parametrize("mode", ["gpt", "bert"])
def test_pretrain_on_own_text_is_deterministic(tmp_path, mode):
    text = write_corpus(tmp_path / "corpus.txt")
    args = ["--text", str(text), "--mode", mode, *TINY, "--steps", "3", "--batch-size", "4", "--vocab-size", "300"]
    main(args + ["--out", str(tmp_path / "a")])
    main(args + ["--out", str(tmp_path / "b")])
    card_a = json.loads((tmp_path / "a" / f"{mode}.json").read_text())
    card_b = json.loads((tmp_path / "b" / f"{mode}.json").read_text())
    assert card_a["sha256"] == card_b["sha256"], "the same seed must give bit-identical weights"
    assert card_a["validation_loss"] == card_b["validation_loss"]
    assert card_a["tokenizer"]["sha256"] == card_b["tokenizer"]["sha256"]
    assert "probe_accuracy_test" not in card_a
    assert load_checkpoint(tmp_path / "a" / f"{mode}.safetensors").config.mode == mode


def test_row_no_out_writes_a_new_folder_named_after_the_text(tmp_path, capsys):
    text = write_corpus(tmp_path / "book.txt")
    code, _ = run_cli(["--text", str(text), *TINY, "--vocab-size", "300"], capsys)
    assert code == 0
    out = tmp_path / "book_checkpoints"
    assert sorted(p.name for p in out.iterdir()) == ["gpt.json", "gpt.safetensors", "tokenizer.json"]
    card = json.loads((out / "gpt.json").read_text())
    assert card["tokenizer"]["source"].startswith("trained on this run's corpus")
    model, tokenizer = load_pretrained("gpt", out)
    assert tokenizer.get_vocab_size() == model.config.vocab_size == 300  # its own tokenizer, not the world's
    # The shipped folder itself is refused unless the flag says so (the fixture checks nothing changed).
    code, err = run_cli(["--text", str(text), *TINY, "--out", str(CHECKPOINT_DIR)], capsys)
    assert_one_line_error(code, err, "shipped checkpoint folder", "--out DIR", "--overwrite-shipped")
    code, err = run_cli(["--text", str(text), *TINY, "--out", str(CHECKPOINT_DIR / "mine")], capsys)
    assert_one_line_error(code, err, "inside the shipped checkpoint folder")
    code, err = run_cli(["--text", str(text), *TINY, "--out", str(CHECKPOINT_DIR), "--overwrite-shipped"], capsys)
    assert_one_line_error(code, err, "generated world only")
    code, err = run_cli(["--text", str(text), *TINY, "--out", str(tmp_path / "x"), "--overwrite-shipped"], capsys)
    assert_one_line_error(code, err, "--overwrite-shipped only applies")
    assert not (tmp_path / "x").exists()


def test_world_run_without_out_writes_a_new_folder(tmp_path, monkeypatch):
    """The old default wrote over the shipped checkpoints; now a world run goes to ./world_seed<seed>_checkpoints."""
    monkeypatch.setattr(pretrain_module, "world_corpus", lambda seed: [write_corpus(tmp_path / "w.txt").read_text()] * 20)
    monkeypatch.setattr(pretrain_module, "probe_accuracy", lambda *a: 0.0)
    card = pretrain(steps=1, batch_size=2, d_model=16, n_layers=1, n_heads=2, max_seq_len=32, vocab_size=300, seed=3,
                    progress=False)
    out = tmp_path / "world_seed3_checkpoints"
    assert (out / "gpt.safetensors").is_file() and card["corpus"] == "generated world, seed 3"
    assert card["corpus_details"] == {"source": "generated world", "seed": 3, "documents": 20}


def test_overwrite_shipped_is_the_explicit_way_to_replace_them(tmp_path, monkeypatch):
    """Against a copy of the shipped folder: the flag is honoured, and keeps the shared tokenizer."""
    fake = tmp_path / "shipped"
    fake.mkdir()
    for f in CHECKPOINT_DIR.iterdir():
        (fake / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(pretrain_module, "CHECKPOINT_DIR", fake)
    monkeypatch.setattr(pretrain_module, "world_corpus", lambda seed: [write_corpus(tmp_path / "w.txt").read_text()] * 20)
    monkeypatch.setattr(pretrain_module, "probe_accuracy", lambda *a: 0.0)
    tokenizer_before = (fake / "tokenizer.json").read_bytes()
    with pytest.raises(PretrainError, match="shipped checkpoint folder"):
        pretrain(out_dir=fake, steps=1, batch_size=2, d_model=16, n_layers=1, n_heads=2, max_seq_len=32, progress=False)
    card = pretrain(out_dir=fake, steps=1, batch_size=2, d_model=16, n_layers=1, n_heads=2, max_seq_len=32,
                    progress=False, overwrite_shipped=True)
    assert card["tokenizer"]["source"] == "reused" and (fake / "tokenizer.json").read_bytes() == tokenizer_before
    assert json.loads((fake / "gpt.json").read_text())["sha256"] == card["sha256"] != json.loads(
        (CHECKPOINT_DIR / "gpt.json").read_text())["sha256"]


def test_row_failed_run_leaves_nothing_and_is_not_reused(tmp_path, capsys, monkeypatch):
    small = tmp_path / "small.txt"
    small.write_text("\n".join(f"Line {i}." for i in range(12)))  # about 100 characters
    out = tmp_path / "small_out"
    code, err = run_cli(["--text", str(small), "--out", str(out), "--steps", "1"], capsys)
    assert_one_line_error(code, err, "too few for windows", "--max-seq-len")
    assert not out.exists(), "a failed run must leave nothing behind"
    # A failure while writing (here: the weights) removes the tokenizer already staged, and the new folder.
    text = write_corpus(tmp_path / "book.txt")

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(pretrain_module, "stage_checkpoint", disk_full)
        code, err = run_cli(["--text", str(text), *TINY, "--vocab-size", "300", "--out", str(out / "deep")], capsys)
    assert code == 1 and "No space left" in err and "Nothing was written" in err and "Traceback" not in err
    assert not out.exists()
    # A folder that has a tokenizer from an earlier run is never reused silently.
    code, _ = run_cli(["--text", str(text), *TINY, "--vocab-size", "300", "--out", str(out)], capsys)
    assert code == 0
    code, err = run_cli(["--text", str(text), *TINY, "--mode", "bert", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "already has a tokenizer.json (used by gpt)", f"--tokenizer {out / 'tokenizer.json'}")
    assert sorted(p.name for p in out.iterdir()) == ["gpt.json", "gpt.safetensors", "tokenizer.json"]
    # The same run again needs --overwrite; then it replaces the checkpoint and leaves no temporary files.
    code, err = run_cli(["--text", str(text), *TINY, "--vocab-size", "300", "--out", str(out)], capsys)
    assert_one_line_error(code, err, "already holds a checkpoint named 'gpt'", "--overwrite")
    code, _ = run_cli(["--text", str(text), *TINY, "--vocab-size", "300", "--out", str(out), "--overwrite"], capsys)
    assert code == 0 and sorted(p.name for p in out.iterdir()) == ["gpt.json", "gpt.safetensors", "tokenizer.json"]


def test_row_vocab_size_is_checked_against_a_reused_tokenizer(tmp_path, capsys):
    text = write_corpus(tmp_path / "book.txt")
    out = tmp_path / "out"
    assert run_cli(["--text", str(text), *TINY, "--vocab-size", "300", "--out", str(out)], capsys)[0] == 0
    reuse = ["--text", str(text), *TINY, "--mode", "bert", "--out", str(out), "--tokenizer", str(out / "tokenizer.json")]
    code, err = run_cli(reuse + ["--vocab-size", "4096"], capsys)
    assert_one_line_error(code, err, "has 300 tokens but --vocab-size is 4096", "Drop --vocab-size")
    assert run_cli(reuse, capsys)[0] == 0  # no --vocab-size: the tokenizer's own size
    card = json.loads((out / "bert.json").read_text())
    assert card["config"]["vocab_size"] == 300 and card["tokenizer"]["source"] == "reused"
    assert card["tokenizer"]["sha256"] == json.loads((out / "gpt.json").read_text())["tokenizer"]["sha256"]
    # A trained tokenizer gets the size asked for (the old CLI ignored --vocab-size here).
    assert run_cli(["--text", str(text), *TINY, "--vocab-size", "320", "--out", str(tmp_path / "v")], capsys)[0] == 0
    assert json.loads((tmp_path / "v" / "gpt.json").read_text())["config"]["vocab_size"] == 320
    code, err = run_cli(["--text", str(text), *TINY, "--vocab-size", "100"], capsys)
    assert_one_line_error(code, err, "--vocab-size 100 is too small", "at least 262")
    code, err = run_cli(["--text", str(text), *TINY, "--tokenizer", str(tmp_path / "none.json")], capsys)
    assert_one_line_error(code, err, "--tokenizer", "No tokenizer file")


def test_row_bad_config_fails_before_any_work(tmp_path, capsys, monkeypatch):
    def must_not_train(*args, **kwargs):
        raise AssertionError("the tokenizer was trained before the config was checked")

    monkeypatch.setattr(pretrain_module, "train_tokenizer", must_not_train)
    text = write_corpus(tmp_path / "book.txt")
    code, err = run_cli(["--text", str(text), "--d-model", "100", "--n-heads", "3"], capsys)
    assert_one_line_error(code, err, "d_model=100 is not divisible by n_heads=3", "choose n_heads among")
    for bad, needle in ((["--steps", "0"], "--steps must be a positive"), (["--lr", "-1"], "--lr must be a positive number"),
                        (["--name", "../evil"], "cannot be a checkpoint name"),
                        (["--name", "tokenizer"], "cannot be a checkpoint name"),
                        (["--steps", "ten"], "invalid int value")):
        code, err = run_cli(["--text", str(text), *bad], capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == [text], "nothing may be written by a rejected run"


def test_row_out_is_a_file_or_not_writable(tmp_path, capsys, monkeypatch):
    text = write_corpus(tmp_path / "book.txt")
    a_file = tmp_path / "taken"
    a_file.write_text("")
    code, err = run_cli(["--text", str(text), *TINY, "--out", str(a_file)], capsys)
    assert_one_line_error(code, err, f"--out {a_file} is a file", "Choose a folder")
    code, err = run_cli(["--text", str(text), *TINY, "--out", str(a_file / "sub")], capsys)
    assert_one_line_error(code, err, f"{a_file} is a file, so no folder can be made")

    def read_only(*args, **kwargs):  # what a read-only mount answers, even to root
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(pretrain_module.tempfile, "NamedTemporaryFile", read_only)
    code, err = run_cli(["--text", str(text), *TINY, "--out", str(tmp_path / "ro" / "new")], capsys)
    assert_one_line_error(code, err, f"cannot write into {tmp_path}", "Read-only file system", "Choose a folder")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write into a 0o555 folder")
def test_out_in_a_folder_without_write_permission(tmp_path, capsys):
    text = write_corpus(tmp_path / "book.txt")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        code, err = run_cli(["--text", str(text), *TINY, "--out", str(locked / "out")], capsys)
        assert_one_line_error(code, err, f"cannot write into {locked}")
    finally:
        locked.chmod(0o755)


def test_row_load_pretrained_by_name_from_any_folder(tmp_path, capsys):
    text = write_corpus(tmp_path / "austen.txt")
    byo = tmp_path / "byo"
    assert run_cli(["--text", str(text), *TINY, "--vocab-size", "300", "--out", str(byo), "--name", "austen"], capsys)[0] == 0
    model, tokenizer = load_pretrained("austen", byo)
    assert model.config.vocab_size == tokenizer.get_vocab_size() == 300
    with pytest.raises(ValueError, match=r"Unknown pretrained model 'emma' in .*byo; choose one of \('austen',\)"):
        load_pretrained("emma", byo)
    with pytest.raises(ValueError, match="holds no checkpoints"):
        load_pretrained("austen", tmp_path)
    with pytest.raises(ValueError, match="there is no folder"):
        load_pretrained("austen", tmp_path / "absent")


@pytest.mark.parametrize("content, needle", [(None, "no such file"), (b"", "is empty"), (b"  \n\n ", "is empty"),
                                             (b"\xff\xfe\x00\x81" * 100, "not UTF-8"), (b"text\x00" * 50, "not UTF-8"),
                                             (b"one line\n\ntwo", "only 2 non-empty documents")])
def test_row_missing_empty_or_binary_file_is_one_line(tmp_path, capsys, content, needle):
    path = tmp_path / "book.txt"
    if content is not None:
        path.write_bytes(content)
    code, err = run_cli(["--text", str(path), *TINY], capsys)
    assert_one_line_error(code, err, f"--text {path}", needle)
    assert list(tmp_path.iterdir()) == ([path] if content is not None else [])


def test_cli_process_exit_code_and_debug_traceback(tmp_path):
    """The real command: exit code 2 and one line; --debug shows the traceback."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "minitransformer.pretrain", "--text", "missing.txt"]
    plain = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr.strip().splitlines() == [f"pretrain: error: --text missing.txt: no such file. Check the path "
                                                 f"(it is relative to {tmp_path})."]
    debug = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "TextFileNotFound" in debug.stderr


def test_row_card_records_corpus_tokenizer_and_command(tmp_path, capsys):
    text = write_corpus(tmp_path / "book.txt")
    args = ["--text", str(text), *TINY, "--vocab-size", "300", "--out", str(tmp_path / "out")]
    assert run_cli(args, capsys)[0] == 0
    card = json.loads((tmp_path / "out" / "gpt.json").read_text())
    data = text.read_bytes()
    assert card["corpus_details"] == {"source": "text file", "file": "book.txt", "bytes": len(data),
                                      "sha256": hashlib.sha256(data).hexdigest(), "documents": 324}
    assert card["corpus"].startswith("text file book.txt (22,030 bytes, sha256 ")
    tokenizer_bytes = (tmp_path / "out" / "tokenizer.json").read_bytes()
    assert card["tokenizer"]["sha256"] == hashlib.sha256(tokenizer_bytes).hexdigest()
    assert card["tokenizer"]["vocab_size"] == 300 and "trained" in card["tokenizer"]["source"]
    assert card["command"] == "python -m minitransformer.pretrain " + " ".join(args)
    assert card["tokens_per_word"] > 1 and card["first_train_loss"] > 0
    # The tokenizer is part of the checkpoint: a swapped tokenizer.json is refused.
    (tmp_path / "out" / "tokenizer.json").write_bytes(tokenizer_bytes + b"\n")  # same tokens, other file
    with pytest.raises(Exception, match="not the tokenizer gpt was trained with"):
        load_pretrained("gpt", tmp_path / "out")
    # Called from Python, the card records the call.
    api_card = pretrain(text_file=text, out_dir=tmp_path / "api", steps=1, batch_size=2, d_model=16, n_layers=1,
                        n_heads=2, max_seq_len=32, vocab_size=300, progress=False)
    assert api_card["command"].startswith("pretrain(steps=1, batch_size=2, text_file=") and "vocab_size=300" in api_card["command"]


# --------------------------------------------------------------------------- BERT masking options (chapter 7's fair BERT)


def test_whole_word_masking_masks_every_token_of_a_chosen_word():
    from minitransformer.pretrain import sample_batch, token_stream, word_boundaries, word_starts

    _, tokenizer = load_pretrained("bert")
    docs = ["Kenji Quinn is originally from Marton. The Blue Fork (a cafe) serves Thornwick cider, unbelievably."] * 40
    stream = token_stream(docs, tokenizer, "[SEP]")
    boundaries = word_boundaries(tokenizer)
    inputs, labels = sample_batch(stream, 16, 32, "bert", tokenizer, torch.Generator().manual_seed(0), "whole_word",
                                  boundaries, 0.4)
    ids = torch.where(labels != -100, labels, inputs)  # the original tokens
    words = word_starts(ids, boundaries).long().cumsum(dim=1)
    chosen = labels != -100
    split_words = 0
    for row in range(ids.shape[0]):
        for word in words[row].unique():
            in_word = words[row] == word
            assert chosen[row][in_word].all() or not chosen[row][in_word].any(), "a word was partly masked"
            split_words += int(in_word.sum() > 1)
    assert split_words > 0, "the sample has no word of several tokens: the test checks nothing"
    share = chosen.float().mean().item()
    assert 0.3 < share < 0.5, f"--mask-prob 0.4 masked {share:.2f} of the tokens"
    # "token" masking is BERT's original: independent tokens, about 15%.
    _, labels = sample_batch(stream, 16, 32, "bert", tokenizer, torch.Generator().manual_seed(0))
    assert 0.1 < (labels != -100).float().mean().item() < 0.2


def test_salient_masking_targets_the_worlds_names_whole_words_at_their_own_rate():
    from minitransformer.pretrain import (PretrainError, salient_stream, salient_words, sample_batch, token_stream,
                                          word_boundaries, word_starts)

    _, tokenizer = load_pretrained("bert")
    names = salient_words(0)
    assert {"baker", "Okafor"} <= names and not names & {"The", "the", "of", "yes"}
    docs = ["Mira Okafor works as a baker in the old town. She likes the quiet evenings there."] * 60
    stream = token_stream(docs, tokenizer, "[SEP]")
    flags = salient_stream(docs, tokenizer, {"Mira", "Okafor", "baker"})
    assert len(flags) == len(stream)
    first = tokenizer.encode(docs[0], add_special_tokens=False)
    flagged = "".join(t for t, f in zip(first.tokens, flags.tolist()) if f).replace("Ġ", " ").split()
    assert flagged == ["Mira", "Okafor", "baker"], flagged
    boundaries = word_boundaries(tokenizer)
    inputs, labels = sample_batch(stream, 64, 48, "bert", tokenizer, torch.Generator().manual_seed(0), "salient",
                                  boundaries, 0.1, flags, 0.9)
    ids = torch.where(labels != -100, labels, inputs)
    chosen = labels != -100
    words = word_starts(ids, boundaries).long().cumsum(dim=1)
    salient_ids = set(tokenizer.encode(" Mira Okafor baker", add_special_tokens=False).ids)
    is_salient = torch.tensor([[i in salient_ids for i in row] for row in ids.tolist()])
    for row in range(ids.shape[0]):
        for word in words[row].unique():
            in_word = words[row] == word
            assert chosen[row][in_word].all() or not chosen[row][in_word].any(), "a word was partly masked"
    salient_rate = chosen[is_salient].float().mean().item()
    other_rate = chosen[~is_salient & (ids >= 5)].float().mean().item()
    assert 0.8 < salient_rate and other_rate < 0.2, (salient_rate, other_rate)
    with pytest.raises(PretrainError, match="salient flags"):
        sample_batch(stream, 2, 48, "bert", tokenizer, torch.Generator(), "salient", boundaries, 0.1, None, 0.9)


def test_salient_masking_is_checked_before_any_work(tmp_path, capsys):
    text = write_corpus(tmp_path / "corpus.txt", repeats=12)
    code, err = run_cli(["--text", str(text), "--mode", "bert", *TINY, "--masking", "salient", "--out",
                         str(tmp_path / "c")], capsys)
    assert_one_line_error(code, err, "needs the generated world")
    code, err = run_cli(["--mode", "bert", *TINY, "--salient-prob", "0.8", "--out", str(tmp_path / "c")], capsys)
    assert_one_line_error(code, err, "--salient-prob applies to --masking salient only")
    code, err = run_cli(["--mode", "bert", *TINY, "--masking", "salient", "--salient-prob", "0", "--out",
                         str(tmp_path / "c")], capsys)
    assert_one_line_error(code, err, "--salient-prob must be in (0, 1]")
    assert not (tmp_path / "c").exists()


def test_word_boundaries_follow_the_space_marker():
    from minitransformer.pretrain import word_boundaries, word_starts

    _, tokenizer = load_pretrained("bert")
    encoding = tokenizer.encode(" Kenji is originally from Marton. (a cafe)", add_special_tokens=False)
    starts = word_starts(torch.tensor([encoding.ids]), word_boundaries(tokenizer))[0].tolist()
    words, current = [], []
    for token, start in zip(encoding.tokens, starts):
        if start and current:
            words.append("".join(current))
            current = []
        current.append(token)
    words.append("".join(current))
    assert words == ["ĠKenji", "Ġis", "Ġoriginally", "Ġfrom", "ĠMarton", ".", "Ġ(", "a", "Ġcafe", ")"]


def test_masking_options_and_init_from_are_recorded_and_checked(tmp_path, capsys):
    text = write_corpus(tmp_path / "corpus.txt", repeats=12)
    base = ["--text", str(text), "--mode", "bert", *TINY, "--vocab-size", "300"]
    assert run_cli(base + ["--out", str(tmp_path / "a")], capsys)[0] == 0
    first = tmp_path / "a" / "bert.safetensors"
    more = ["--text", str(text), "--mode", "bert", *TINY, "--tokenizer", str(tmp_path / "a" / "tokenizer.json")]
    assert run_cli(more + ["--out", str(tmp_path / "b"), "--init-from", str(first), "--masking", "whole_word",
                           "--mask-prob", "0.4"], capsys)[0] == 0
    card = json.loads((tmp_path / "b" / "bert.json").read_text())
    assert card["masking"] == "whole_word" and card["mask_prob"] == 0.4 and "whole-word" in card["objective"]
    first_card = json.loads((tmp_path / "a" / "bert.json").read_text())
    assert card["init_from"]["sha256"] == first_card["sha256"] and card["total_steps"] == 2
    assert first_card["masking"] == "token" and first_card["objective"] == "masked language modelling (15%, 80/10/10)"

    code, err = run_cli(["--text", str(text), *TINY, "--masking", "whole_word", "--out", str(tmp_path / "c")], capsys)
    assert_one_line_error(code, err, "apply to --mode bert only")
    code, err = run_cli(base + ["--mask-prob", "1.5", "--out", str(tmp_path / "c")], capsys)
    assert_one_line_error(code, err, "--mask-prob must be between 0 and 1")
    code, err = run_cli(more + ["--init-from", str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "c")], capsys)
    assert_one_line_error(code, err, "no such checkpoint file")
    code, err = run_cli(more + ["--init-from", str(first), "--d-model", "32", "--out", str(tmp_path / "c")], capsys)
    assert_one_line_error(code, err, "pass the same --mode and sizes")
    assert not (tmp_path / "c").exists()


def test_answer_concentration_agrees_with_probe_accuracy():
    """Chapter 7's diagnosis of the BERT checkpoints: per relation, the answer given most often and its share."""
    from minitransformer.probing import answer_concentration, probe_accuracy
    from minitransformer.world import load_task

    model, tokenizer = load_pretrained("gpt")
    examples = load_task("probing").test[:60]
    concentration = answer_concentration(model, tokenizer, examples)
    assert sum(c["probes"] for c in concentration.values()) == len(examples)
    correct = sum(c["accuracy"] * c["probes"] for c in concentration.values())
    assert correct / len(examples) == pytest.approx(probe_accuracy(model, tokenizer, examples), abs=1e-3)
    for relation, c in concentration.items():
        assert c["most_given"] in examples[[e["relation"] for e in examples].index(relation)]["candidates"]
        assert 1 / c["probes"] <= c["most_given_share"] <= 1


def test_corpus_phrasing_probes_use_the_corpus_own_sentences():
    """Chapter 7 asks the backbones about facts in the corpus's own words: those sentences must occur in it."""
    from minitransformer.probing import corpus_phrasing_probes, fill_template
    from minitransformer.world import load_task
    from minitransformer.world.corpus import pretraining_corpus
    from minitransformer.world.entities import generate_world

    world = generate_world(0)
    text = "\n".join(pretraining_corpus(world, 0, 3000))
    probes = corpus_phrasing_probes(world, sorted({e["subject"] for e in load_task("probing").test}))
    assert {p["relation"] for p in probes} == {"cuisine", "profession", "hometown"}
    for relation in ("cuisine", "profession", "hometown"):
        filled = [fill_template(p["text"].removesuffix(" ."), p["answer"])[0] for p in probes if p["relation"] == relation]
        assert any(sentence in text for sentence in filled), f"no {relation} probe is phrased as the corpus states it"
    assert all(p["answer"] in p["candidates"] and p["text"].count("[MASK]") == 1 for p in probes)
    with pytest.raises(ValueError, match="not people, venues or towns"):
        corpus_phrasing_probes(world, ["Nobody Atall"])
