"""Soft-prompt files (prompt tuning, P-tuning, prefix tuning, P-tuning v2) in Hugging Face PEFT's layout.

HF PEFT stores a prompt-learning method as one tensor, `prompt_embeddings` (the prompt encoder's output), with
`task_type`, `inference_mode: true` and the backbone's sizes in the config; P-tuning v2 is its PREFIX_TUNING with
`prefix_projection: false` for a classifier. These tests need no `peft`: they check the layout, round trips with
identical logits, that the files the project wrote before still load, and one clear error per bad input.
tests/test_peft_interop.py checks the same files against the real `peft`.
"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from minitransformer import MiniTransformer, SequenceClassifier, TokenClassifier, TransformerConfig
from minitransformer.checkpoint import CHECKPOINT_DIR
from minitransformer.peft import (CONFIG_NAME, KEY_PREFIX, PEFT_TYPES, WEIGHTS_NAME, load_peft_model, read_peft_config,
                                  save_peft_model, trainable_state_dict)
from minitransformer.tokenizer import load_tokenizer
from solutions.p_tuning import PromptEncoderConfig, PTuningModel
from solutions.p_tuning_v2 import PTuningV2Config, inject_p_tuning_v2, prefix_to_past_key_values
from solutions.prefix_tuning import PrefixTuningConfig, PrefixTuningModel
from solutions.prompt_tuning import PromptTuningClassifier, PromptTuningConfig

TOKENIZER = load_tokenizer(CHECKPOINT_DIR / "tokenizer.json")
VOCAB = TOKENIZER.get_vocab_size()  # label words must be real tokens


def backbone(mode="gpt", d=16, layers=2, heads=2, seed=0) -> MiniTransformer:
    torch.manual_seed(seed)
    config = TransformerConfig(vocab_size=VOCAB, max_seq_len=32, d_model=d, n_layers=layers, n_heads=heads, d_ff=32,
                               dropout=0.0, mode=mode)
    return MiniTransformer(config).eval()


def randomize_trainable(model, seed=1):
    """Random values in every trainable tensor, so that the prompt (and head) matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(0.3 * torch.randn(p.shape, generator=generator))
    return model


def batch(seed=2):
    ids = torch.randint(6, VOCAB, (3, 7), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 4:], mask[2, 6:] = 0, 0
    return ids * mask, mask


def logits(model, ids, mask):
    with torch.no_grad():
        return model.eval()(ids, mask).logits


# ----------------------------------------------------------------------------- one trained model per method


def prompt_tuned(d=16, **kwargs):
    config = PromptTuningConfig(num_virtual_tokens=4, prompt_tuning_init="TEXT", prompt_tuning_init_text=" good bad",
                                **kwargs)
    return randomize_trainable(PromptTuningClassifier(backbone(d=d), TOKENIZER, config)), config


def fresh_prompt_tuned(d=16):
    return PromptTuningClassifier(backbone(d=d), TOKENIZER)


def p_tuned(kind="LSTM", mode="gpt", template=(3, "[X]", 3, "[Y]")):
    template = list(template) + (["."] if mode == "bert" else [])
    P = sum(p for p in template if isinstance(p, int))
    config = PromptEncoderConfig(num_virtual_tokens=P, encoder_reparameterization_type=kind, encoder_hidden_size=8,
                                 template=template)
    return randomize_trainable(PTuningModel(backbone(mode), TOKENIZER, config, ["bad", "good"])), config


def fresh_p_tuned(mode="gpt"):
    return PTuningModel(backbone(mode), TOKENIZER, PromptEncoderConfig(), ["bad", "good"])


def prefix_tuned(**kwargs):
    model = randomize_trainable(PrefixTuningModel(backbone(), PrefixTuningConfig(num_virtual_tokens=3,
                                                                                 encoder_hidden_size=8, **kwargs)))
    return model, model.peft_config


def fresh_prefix_tuned(d=16):
    return PrefixTuningModel(backbone(d=d), PrefixTuningConfig())


def classifier(kind=TokenClassifier, mode="bert", d=16, seed=0):
    model = kind(backbone(mode, d=d, seed=seed), num_labels=3, dropout=0.0)
    return model.eval()


def deep_prompted(kind=TokenClassifier, mode="bert", **kwargs):
    model, config = classifier(kind, mode), PTuningV2Config(num_virtual_tokens=3, **kwargs)
    inject_p_tuning_v2(model, config, verbose=False)
    return randomize_trainable(model), config


METHODS = {  # name: (trained model and config, a fresh model to load into)
    "prompt_tuning": (prompt_tuned, fresh_prompt_tuned),
    "p_tuning_lstm": (p_tuned, fresh_p_tuned),
    "p_tuning_mlp": (lambda: p_tuned("MLP"), fresh_p_tuned),
    "p_tuning_none_bert": (lambda: p_tuned("NONE", "bert"), lambda: fresh_p_tuned("bert")),
    "prefix_mlp": (prefix_tuned, fresh_prefix_tuned),
    "prefix_table": (lambda: prefix_tuned(prefix_projection=False), fresh_prefix_tuned),
    "prefix_embedding_only": (lambda: prefix_tuned(embedding_only=True), fresh_prefix_tuned),
    "p_tuning_v2_tokens": (deep_prompted, classifier),
    "p_tuning_v2_sequence_gpt": (lambda: deep_prompted(SequenceClassifier, "gpt"),
                                 lambda: classifier(SequenceClassifier, "gpt")),
    "p_tuning_v2_projection": (lambda: deep_prompted(prefix_projection=True, encoder_hidden_size=8), classifier),
}


def read(folder: Path):
    return json.loads((folder / CONFIG_NAME).read_text()), load_file(folder / WEIGHTS_NAME)


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("method", METHODS)
def test_round_trip_gives_identical_logits(tmp_path, method):
    make, fresh = METHODS[method]
    model, config = make()
    ids, mask = batch()
    before = logits(model, ids, mask)
    save_peft_model(model, config, tmp_path)
    assert torch.equal(logits(model, ids, mask), before), "saving must not change the model"
    reloaded = load_peft_model(fresh(), tmp_path)
    assert torch.equal(logits(reloaded, ids, mask), before)
    # What trains after loading is exactly what the file holds: the prompt (as vectors), and the head if any.
    stored = load_file(tmp_path / WEIGHTS_NAME)
    assert sum(t.numel() for t in stored.values()) == sum(t.numel() for t in trainable_state_dict(reloaded).values())


def test_input_prompt_variants_keep_the_project_layout(tmp_path):
    """P-tuning v2's comparison variants (prompts at the input only, their outputs dropped before the head) have no
    HF PEFT class: they are written as before, peft_type P_TUNING_V2, and round-trip."""
    model, config = deep_prompted(SequenceClassifier, "bert", prompt_depth="input",
                                  encoder_reparameterization_type="MLP", encoder_hidden_size=8)
    ids, mask = batch()
    before = logits(model, ids, mask)
    save_peft_model(model, config, tmp_path)
    values, tensors = read(tmp_path)
    assert values["peft_type"] == "P_TUNING_V2" and "prompt_embeddings" not in tensors
    assert all(k.startswith(KEY_PREFIX) for k in tensors)
    reloaded = load_peft_model(classifier(SequenceClassifier, "bert"), tmp_path)
    assert torch.equal(logits(reloaded, ids, mask), before)


# ----------------------------------------------------------------------------- HF PEFT's layout


SIZES = {"token_dim": 16, "num_layers": 2, "num_attention_heads": 2, "num_transformer_submodules": 1}


@pytest.mark.parametrize("method, peft_type, task_type, width", [
    ("prompt_tuning", "PROMPT_TUNING", "CAUSAL_LM", 16),
    ("p_tuning_lstm", "P_TUNING", "CAUSAL_LM", 16),
    ("p_tuning_none_bert", "P_TUNING", "FEATURE_EXTRACTION", 16),
    ("prefix_mlp", "PREFIX_TUNING", "CAUSAL_LM", 2 * 2 * 16),
    ("p_tuning_v2_tokens", "PREFIX_TUNING", "TOKEN_CLS", 2 * 2 * 16),
    ("p_tuning_v2_sequence_gpt", "PREFIX_TUNING", "SEQ_CLS", 2 * 2 * 16),
])
def test_files_are_in_hf_peft_layout(tmp_path, method, peft_type, task_type, width):
    model, config = METHODS[method][0]()
    save_peft_model(model, config, tmp_path)
    values, tensors = read(tmp_path)
    assert values["peft_type"] == peft_type and values["task_type"] == task_type
    assert values["inference_mode"] is True  # the file holds the prompt itself, as HF PEFT's
    assert {k: values[k] for k in SIZES} == SIZES
    P = config.num_virtual_tokens
    assert tensors["prompt_embeddings"].shape == (P, width)
    if task_type in ("SEQ_CLS", "TOKEN_CLS"):
        # HF PEFT's names for a prompt-learning model's modules_to_save: base_model.<path>. "head" alone would also
        # match an lm_head in HF PEFT (which matches by plain suffix); "base_model.head" matches only our head.
        assert set(tensors) == {"prompt_embeddings", "base_model.head.weight", "base_model.head.bias"}
        assert values["modules_to_save"] == ["base_model.head"] and values["prefix_projection"] is False
        assert not {"prompt_depth", "encoder_reparameterization_type", "prompt_tuning_init"} & set(values)
    else:
        assert set(tensors) == {"prompt_embeddings"} and values["modules_to_save"] == []


def test_text_init_names_a_tokenizer(tmp_path):
    """HF PEFT's PromptTuningConfig refuses prompt_tuning_init="TEXT" without tokenizer_name_or_path (it reads it
    only to start a new prompt, never to load a trained one)."""
    model, config = prompt_tuned()
    save_peft_model(model, config, tmp_path)
    values, _ = read(tmp_path)
    assert values["prompt_tuning_init"] == "TEXT" and values["tokenizer_name_or_path"]
    assert read_peft_config(tmp_path) == config


def test_the_file_holds_the_encoders_output(tmp_path):
    """As HF PEFT's get_prompt_embedding_to_save: P-tuning's LSTM and prefix tuning's MLP are not stored, their
    output is."""
    model, config = p_tuned("LSTM")
    save_peft_model(model, config, tmp_path / "p")
    with torch.no_grad():
        assert torch.equal(read(tmp_path / "p")[1]["prompt_embeddings"], model.eval().prompt_encoder())
    assert read_peft_config(tmp_path / "p").inference_mode

    model, config = prefix_tuned()
    save_peft_model(model, config, tmp_path / "prefix")
    with torch.no_grad():
        assert torch.equal(read(tmp_path / "prefix")[1]["prompt_embeddings"], model.prefix_encoder.flat_prefix())
    assert not read_peft_config(tmp_path / "prefix").prefix_projection  # it loads as the table

    model, config = deep_prompted()
    save_peft_model(model, config, tmp_path / "v2")
    stored = read(tmp_path / "v2")[1]["prompt_embeddings"]
    # HF PEFT's layout of a prefix row: [layer 0 key | layer 0 value | layer 1 key | ...]
    expected = prefix_to_past_key_values(stored[None], num_layers=2, num_heads=2)
    for (k, v), (k2, v2) in zip(expected, model.backbone.prompt_encoder(1)):
        assert torch.equal(k, k2) and torch.equal(v, v2)


def test_a_file_like_hf_peft_writes_loads(tmp_path):
    """The fields HF PEFT adds: peft_version, auto_mapping, null encoder_hidden_size, and its own modules_to_save
    ("classifier" and "score", once per time the config was extended)."""
    model, config = deep_prompted()
    ids, mask = batch()
    before = logits(model, ids, mask)
    save_peft_model(model, config, tmp_path)
    values, tensors = read(tmp_path)
    values = {"auto_mapping": None, "base_model_name_or_path": None, "encoder_hidden_size": None,
              "inference_mode": True, "init_weights": None,
              "modules_to_save": ["head", "classifier", "score", "classifier", "score"],
              "num_attention_heads": 2, "num_layers": 2, "num_transformer_submodules": 1, "num_virtual_tokens": 3,
              "peft_type": "PREFIX_TUNING", "peft_version": "0.21.2", "prefix_projection": True, "revision": None,
              "task_type": "TOKEN_CLS", "token_dim": 16}
    (tmp_path / CONFIG_NAME).write_text(json.dumps(values))
    reloaded = load_peft_model(classifier(), tmp_path)
    assert torch.equal(logits(reloaded, ids, mask), before)
    assert reloaded.backbone.prompt_config.modules_to_save == ["head"]

    # HF PEFT's P-tuning has no template: every virtual token goes in front of the input.
    model, config = p_tuned("MLP", template=(4, "[X]", "[Y]"))
    before = logits(model, ids, mask)
    save_peft_model(model, config, tmp_path)
    values = {k: v for k, v in read(tmp_path)[0].items() if k != "template"}
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**values, "peft_version": "0.21.2", "auto_mapping": None}))
    reloaded = load_peft_model(fresh_p_tuned(), tmp_path)
    assert reloaded.peft_config.template == [4, "[X]", "[Y]"]
    assert torch.equal(logits(reloaded, ids, mask), before)


# ----------------------------------------------------------------------------- files the project wrote before


def save_old_format(model, config, folder: Path):
    """What save_peft_model wrote before soft prompts took HF PEFT's layout: every trainable tensor by its name."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({KEY_PREFIX + n: t for n, t in trainable_state_dict(model).items()}, str(folder / WEIGHTS_NAME))
    (folder / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")


@pytest.mark.parametrize("method", METHODS)
def test_old_files_still_load(tmp_path, method):
    make, fresh = METHODS[method]
    model, config = make()
    ids, mask = batch()
    before = logits(model, ids, mask)
    save_old_format(model, config, tmp_path)
    assert json.loads((tmp_path / CONFIG_NAME).read_text())["task_type"] is None
    reloaded = load_peft_model(fresh(), tmp_path)
    assert torch.equal(logits(reloaded, ids, mask), before)
    # The old file kept the training-time encoder; so does the model loaded from it.
    assert set(trainable_state_dict(reloaded)) == set(trainable_state_dict(model))


# ----------------------------------------------------------------------------- one clear error per bad input


@pytest.mark.parametrize("method, fresh", [
    ("prompt_tuning", lambda: fresh_prompt_tuned(d=32)),
    ("prefix_mlp", lambda: fresh_prefix_tuned(d=32)),
    ("p_tuning_v2_tokens", lambda: classifier(d=32)),
])
def test_a_file_for_another_model_size_is_refused(tmp_path, method, fresh):
    model, config = METHODS[method][0]()
    save_peft_model(model, config, tmp_path)
    with pytest.raises(ValueError, match=r"saved for a backbone with token_dim=16.*d_model=32.*load it into the "
                                         r"base model"):
        load_peft_model(fresh(), tmp_path)


def test_other_layer_count_is_refused(tmp_path):
    model, config = prompt_tuned()
    save_peft_model(model, config, tmp_path)
    deeper = PromptTuningClassifier(backbone(layers=3), TOKENIZER)
    with pytest.raises(ValueError, match=r"num_layers=2.*n_layers=3"):
        load_peft_model(deeper, tmp_path)


def test_an_encoder_decoder_prompt_is_refused(tmp_path):
    model, config = prompt_tuned()
    save_peft_model(model, config, tmp_path)
    values = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**values, "num_transformer_submodules": 2}))
    with pytest.raises(ValueError, match="num_transformer_submodules=2.*encoder-decoder"):
        load_peft_model(fresh_prompt_tuned(), tmp_path)


def test_a_file_for_another_kind_of_model_is_refused(tmp_path):
    model, config = deep_prompted(TokenClassifier)
    save_peft_model(model, config, tmp_path / "tagger")
    with pytest.raises(ValueError, match="task_type='TOKEN_CLS'.*this model is a SequenceClassifier.*Load it into a "
                                         "TokenClassifier"):
        load_peft_model(classifier(SequenceClassifier), tmp_path / "tagger")
    with pytest.raises(ValueError, match="task_type='TOKEN_CLS'.*this model is a PrefixTuningModel"):
        load_peft_model(fresh_prefix_tuned(), tmp_path / "tagger")

    model, config = prefix_tuned()
    save_peft_model(model, config, tmp_path / "lm")
    with pytest.raises(ValueError, match="task_type='CAUSAL_LM'.*GPT-mode language model.*this model is a TokenClassifier"):
        load_peft_model(classifier(TokenClassifier, "bert"), tmp_path / "lm")

    model, config = prompt_tuned()
    save_peft_model(model, config, tmp_path / "prompt")
    with pytest.raises(TypeError, match="build PromptTuningClassifier"):  # the method's own error
        load_peft_model(fresh_p_tuned(), tmp_path / "prompt")


def test_p_tuning_v2_needs_its_chapter(tmp_path, monkeypatch):
    model, config = deep_prompted()
    save_peft_model(model, config, tmp_path)
    monkeypatch.delitem(PEFT_TYPES, "P_TUNING_V2")
    with pytest.raises(ValueError, match="P_TUNING_V2 \\(HF PEFT writes it as peft_type='PREFIX_TUNING' with "
                                         "task_type='TOKEN_CLS'\\).*Run the chapter that defines the P_TUNING_V2"):
        load_peft_model(classifier(), tmp_path)


def test_a_prompt_of_the_wrong_shape_is_refused(tmp_path):
    model, config = prefix_tuned()
    save_peft_model(model, config, tmp_path)
    values = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**values, "num_virtual_tokens": 4}))
    with pytest.raises(ValueError, match=r"does not fit this model.*prefix_encoder.embedding.weight \(3, 64\), expected "
                                         r"\(4, 64\)"):
        load_peft_model(fresh_prefix_tuned(), tmp_path)


def test_tensors_outside_the_prompt_and_modules_to_save_are_refused(tmp_path):
    model, config = deep_prompted()
    model.backbone.base_layer.ln_f.requires_grad_(True)
    with pytest.raises(ValueError, match="ln_f.*neither the prompt.*nor in modules_to_save"):
        save_peft_model(model, config, tmp_path)
