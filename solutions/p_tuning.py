"""Generated from notebooks/07_p_tuning.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


from dataclasses import dataclass, field
from typing import ClassVar, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from minitransformer.model import MiniTransformer
from minitransformer.peft import PeftConfig, add_to_class
from minitransformer.tokenizer import CLS, MASK, SEP
from minitransformer.data import make_loader
from minitransformer.evaluation import evaluate_accuracy
from minitransformer.training import PlateauWarning, freeze

INPUT_SLOT, ANSWER_SLOT = "[X]", "[Y]"  # where a template puts the input and the answer
REPARAMETERIZATIONS = ("LSTM", "MLP", "NONE")


@dataclass
class PromptEncoderConfig(PeftConfig):
    """P-tuning (Liu et al., 2021) with HF PEFT's field names, plus the template the prompt is mixed into."""

    peft_type: ClassVar[str] = "P_TUNING"
    num_virtual_tokens: int = 6
    token_dim: Optional[int] = None  # the backbone's d_model; filled in when the prompt is attached
    encoder_reparameterization_type: str = "LSTM"
    encoder_hidden_size: int = 128
    encoder_num_layers: int = 2
    encoder_dropout: float = 0.0
    template: list = field(default_factory=lambda: [3, INPUT_SLOT, 3, ANSWER_SLOT])
    inference_mode: bool = False  # True: the exported prompt (P x d vectors), no encoder
    modules_to_save: list = field(default_factory=list, kw_only=True)  # no task head: the LM head answers

    def __post_init__(self):
        if self.encoder_reparameterization_type not in REPARAMETERIZATIONS:
            raise ValueError(f"encoder_reparameterization_type={self.encoder_reparameterization_type!r} is not one of "
                             f"{REPARAMETERIZATIONS}: 'LSTM' (the paper), 'MLP', or 'NONE' (plain trainable vectors).")
        self.template = list(self.template)
        for part in self.template:
            if isinstance(part, bool) or not isinstance(part, (int, str)) or (isinstance(part, int) and part < 0):
                raise ValueError(f"Template part {part!r} is neither a number of prompt tokens (an int >= 0) nor text.")
        for slot, role in ((INPUT_SLOT, "each example's input goes"), (ANSWER_SLOT, "the model predicts the answer")):
            n = self.template.count(slot)
            if n != 1:
                raise ValueError(f"The template {self.template} must hold {slot!r} exactly once (it has {n}): that is "
                                 f"where {role}, e.g. [3, '{INPUT_SLOT}', 3, '{ANSWER_SLOT}'].")
        placed = sum(p for p in self.template if isinstance(p, int))
        if placed != self.num_virtual_tokens:
            raise ValueError(f"The template {self.template} places {placed} prompt tokens but num_virtual_tokens="
                             f"{self.num_virtual_tokens}; make them equal (num_virtual_tokens={placed}).")

    def inject(self, model, verbose: bool = False):
        """Give a PTuningModel this prompt (an encoder, or in inference mode the stored vectors)."""
        if not isinstance(model, PTuningModel):
            raise TypeError(f"P-tuning needs a PTuningModel (backbone + tokenizer + verbaliser), got "
                            f"{type(model).__name__}: build PTuningModel(backbone, tokenizer, config, verbalizer).")
        model.attach_prompt(self)
        return model


class PromptEncoder(nn.Module):
    """P trainable inputs -> bidirectional LSTM -> 2-layer MLP -> the P continuous prompt vectors, (P, d)."""

    def __init__(self, config: PromptEncoderConfig):
        super().__init__()
        P, d, h = config.num_virtual_tokens, config.token_dim, config.encoder_hidden_size
        if not P or not d:
            raise ValueError(f"PromptEncoder needs num_virtual_tokens > 0 and token_dim (got {P} and {d}); a template "
                             "without prompt tokens is a discrete prompt and needs no encoder.")
        self.kind = config.encoder_reparameterization_type
        self.embedding = nn.Embedding(P, d)  # e_1..e_P
        if self.kind == "LSTM":
            self.lstm_head = nn.LSTM(d, h, num_layers=config.encoder_num_layers, dropout=config.encoder_dropout,
                                     bidirectional=True, batch_first=True)
            self.mlp_head = nn.Sequential(nn.Linear(2 * h, 2 * h), nn.ReLU(), nn.Linear(2 * h, d))
        elif self.kind == "MLP":
            self.mlp_head = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d))

    def forward(self) -> torch.Tensor:
        e = self.embedding.weight  # (P, d)
        if self.kind == "LSTM":
            states, _ = self.lstm_head(e.unsqueeze(0))  # (1, P, 2h): forward and backward states side by side
            return self.mlp_head(states).squeeze(0)  # (P, d)
        if self.kind == "MLP":
            return self.mlp_head(e)
        return e


def lstm_parameter_count(P: int, d: int, h: int, layers: int = 2) -> int:
    """Parameters of the LSTM prompt encoder, from the formula."""
    lstm = sum(2 * (4 * h * ((d if i == 0 else 2 * h) + h) + 8 * h) for i in range(layers))
    mlp = (2 * h) * (2 * h) + 2 * h + (2 * h) * d + d
    return P * d + lstm + mlp


def encode_piece(tokenizer, text: str) -> list[int]:
    """Token ids of one template piece as it reads inside a sentence ("works as a" -> Ġworks Ġas Ġa; "." -> .)."""
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    if ids and not text[:1].isspace() and not text[:1].isalnum() and tokenizer.id_to_token(ids[0]) == "Ġ":
        ids = ids[1:]  # the tokenizer adds a space before every piece; punctuation has none
    return ids


def compile_template(template: Sequence, tokenizer, mode: str) -> list[tuple[str, object]]:
    """The template as segments: ("prompt", k), ("tokens", ids), ("input", None), ("answer", [MASK] id or None)."""
    segments: list[tuple[str, object]] = [("tokens", [tokenizer.token_to_id(CLS)])] if mode == "bert" else []
    for part in template:
        if isinstance(part, int):
            if part:
                segments.append(("prompt", part))
        elif part == INPUT_SLOT:
            segments.append(("input", None))
        elif part == ANSWER_SLOT:
            segments.append(("answer", tokenizer.token_to_id(MASK) if mode == "bert" else None))
        else:
            segments.append(("tokens", encode_piece(tokenizer, part)))
    if mode == "gpt" and segments[-1][0] != "answer":
        raise ValueError(f"In GPT mode the answer slot {ANSWER_SLOT!r} must end the template (got {list(template)}): "
                         "GPT predicts the answer as the next token after the last position.")
    if mode == "bert":
        segments.append(("tokens", [tokenizer.token_to_id(SEP)]))
    return segments


def fixed_length(segments) -> int:
    """Positions the template takes besides the input: prompt vectors, anchor tokens, special tokens, a [MASK]."""
    size = {"prompt": lambda k: k, "tokens": len, "input": lambda _: 0, "answer": lambda v: int(v is not None)}
    return sum(size[kind](value) for kind, value in segments)


def assemble(segments, embed: nn.Embedding, prompt: torch.Tensor, input_ids: torch.Tensor,
             attention_mask: torch.Tensor, max_seq_len: int):
    """The template filled in for a batch: (inputs_embeds (B, L, d), attention_mask (B, L), answer_index (B,))."""
    B, T = input_ids.shape
    lengths = attention_mask.sum(dim=1).tolist()  # real input tokens per row
    if fixed_length(segments) + max(lengths, default=0) > max_seq_len:
        raise ValueError(f"The template takes {fixed_length(segments)} positions, so an input may have at most "
                         f"{max_seq_len - fixed_length(segments)} tokens (max_seq_len={max_seq_len}), but this batch "
                         f"has one of {max(lengths)}. Truncate the inputs or use fewer prompt/anchor tokens.")
    anchor_ids = [i for kind, value in segments if kind == "tokens" for i in value]
    answer_id = next(value for kind, value in segments if kind == "answer")  # [MASK] (BERT) or None (GPT)
    anchors_at = len(prompt)  # where each part starts in the table
    inputs_at = anchors_at + len(anchor_ids) + (answer_id is not None)
    pad_row = inputs_at + B * T
    table = torch.cat([prompt,  # (P, d)
                       embed(torch.tensor(anchor_ids + ([answer_id] if answer_id is not None else []),
                                          dtype=torch.long, device=prompt.device)),  # (A, d), the [MASK] last
                       embed(input_ids).reshape(B * T, -1),  # (B*T, d)
                       prompt.new_zeros(1, prompt.shape[-1])])  # the padding row
    rows, answer_index = [], []
    for b in range(B):
        row, next_prompt, next_anchor = [], 0, anchors_at
        for kind, value in segments:
            if kind == "prompt":
                row += range(next_prompt, next_prompt + value)
                next_prompt += value
            elif kind == "tokens":
                row += range(next_anchor, next_anchor + len(value))
                next_anchor += len(value)
            elif kind == "input":
                row += range(inputs_at + b * T, inputs_at + b * T + lengths[b])
            elif answer_id is None:  # GPT: the answer is the next token after the position before the slot
                answer_index.append(len(row) - 1)
            else:  # BERT: the [MASK] fills the slot and is read there
                answer_index.append(len(row))
                row.append(inputs_at - 1)
        rows.append(row)
    L = max(len(row) for row in rows)
    index = torch.tensor([row + [pad_row] * (L - len(row)) for row in rows], device=prompt.device)  # (B, L)
    mask = torch.tensor([[1] * len(row) + [0] * (L - len(row)) for row in rows], device=prompt.device)
    return table[index], mask, torch.tensor(answer_index, device=prompt.device)


def verbalizer_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """One token id per answer word (as it reads after a space); an error for a word of several tokens."""
    ids = []
    for word in words:
        encoding = tokenizer.encode(" " + str(word).strip(), add_special_tokens=False)
        if len(encoding.ids) != 1:
            raise ValueError(f"The answer word {word!r} is {len(encoding.ids)} tokens {encoding.tokens}, but the model "
                             "reads one position per answer. Choose a one-token word (e.g. 'good', not 'great').")
        ids.append(encoding.ids[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"The verbaliser {list(words)} repeats a word; each class needs its own.")
    return ids


@dataclass
class ClozeOutput:
    logits: torch.Tensor  # (B, C): the LM's logits of the C answer words at the answer position
    loss: Optional[torch.Tensor] = None


class PromptEmbedding(nn.Module):
    """A prompt stored as its P vectors, (P, d): the "NONE" baseline, and every exported prompt."""

    def __init__(self, config: PromptEncoderConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.num_virtual_tokens, config.token_dim)

    def forward(self) -> torch.Tensor:
        return self.embedding.weight


class PTuningModel(nn.Module):
    """A frozen MiniTransformer read through a template with a continuous prompt; answers with a verbaliser."""

    def __init__(self, backbone: MiniTransformer, tokenizer, config: PromptEncoderConfig, verbalizer: Sequence[str]):
        super().__init__()
        self.backbone = freeze(backbone)
        self.tokenizer = tokenizer
        self.verbalizer = list(verbalizer)
        self.register_buffer("answer_ids", torch.tensor(verbalizer_ids(tokenizer, verbalizer)), persistent=False)
        config.inject(self)

    def attach_prompt(self, config: PromptEncoderConfig) -> None:
        d, mode, context = self.backbone.config.d_model, self.backbone.config.mode, self.backbone.config.max_seq_len
        if config.token_dim not in (None, d):
            raise ValueError(f"token_dim={config.token_dim} but the backbone's d_model is {d}; leave token_dim unset.")
        config.token_dim = d
        segments = compile_template(config.template, self.tokenizer, mode)
        if fixed_length(segments) >= context:
            raise ValueError(f"The template takes {fixed_length(segments)} positions, leaving no room for the input in "
                             f"max_seq_len={context}: use fewer prompt or anchor tokens.")
        self.segments, self.peft_config = segments, config
        if config.inference_mode or config.encoder_reparameterization_type == "NONE" or config.num_virtual_tokens == 0:
            self.prompt_encoder = PromptEmbedding(config)
            with torch.no_grad():  # plain vectors start at the scale of the real token embeddings
                self.prompt_encoder.embedding.weight.normal_(0, float(self.backbone.tok_emb.weight.std()))
        else:
            self.prompt_encoder = PromptEncoder(config)
        self.prompt_encoder.to(self.backbone.device)

    def forward(self, input_ids, attention_mask=None, labels=None, prompt: Optional[torch.Tensor] = None):
        """input_ids (B, T): each example's input only. `prompt` (P, d) overrides the encoder's (for tests)."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        prompt = self.prompt_encoder() if prompt is None else prompt
        embeds, mask, answer = assemble(self.segments, self.backbone.tok_emb, prompt, input_ids, attention_mask,
                                        self.backbone.config.max_seq_len)
        hidden = self.backbone(inputs_embeds=embeds, attention_mask=mask, return_logits=False).hidden_states
        at_answer = hidden[torch.arange(len(answer), device=hidden.device), answer]  # (B, d)
        logits = self.backbone.lm_logits(at_answer)[:, self.answer_ids]  # (B, C): the verbaliser's words
        return ClozeOutput(logits, F.cross_entropy(logits, labels) if labels is not None else None)


# Hand-written prompts per relation: each differs from the first (the task's own wording) by one word.
DISCRETE_PROMPTS = {
    "profession": ["[X] works as a", "[X] worked as a", "[X] is a", "[X] was a"],
    "hometown": ["[X] is originally from", "[X] is from", "[X] was from", "[X] comes from"],
    "cuisine": ["The cuisine at [X] is", "The food at [X] is", "The cooking at [X] is", "The menu at [X] is"],
    "venue_town": ["[X] is located in", "[X] is in", "[X] was located in", "[X] is found in"],
    "owner_profession": ["The owner of [X] works as a", "The owner of [X] is a", "The owner of [X] was a",
                         "The owner of [X] worked as a"],
    "town_product": ["[X] is famous for its", "[X] is known for its", "[X] was famous for its", "[X] was known for its"],
}


def discrete_template(prompt: str, mode: str) -> list:
    """"[X] is from" -> ["[X]", " is from", "[Y]"], plus "." after the answer for BERT (as in the corpus)."""
    before, _, after = prompt.partition(INPUT_SLOT)
    parts = ([before.strip()] if before.strip() else []) + [INPUT_SLOT] + ([after] if after.strip() else [])
    return parts + [ANSWER_SLOT] + (["."] if mode == "bert" else [])


def probe_splits(task, relation: str):
    """One relation's (train, validation, test) probes, and its candidate answers (the verbaliser)."""
    splits = tuple([ex for ex in split if ex["relation"] == relation] for split in (task.train, task.validation, task.test))
    return splits, splits[0][0]["candidates"]


def cloze_loader(examples, tokenizer, input_key: str, labels, batch_size=32, shuffle=False, seed=0, max_len=96):
    """Batches of (the tokens of each example's `input_key` text, its label); the model adds the template."""
    items = [(encode_piece(tokenizer, " " + ex[input_key].strip())[:max_len], int(y)) for ex, y in zip(examples, labels)]
    return make_loader(items, tokenizer, batch_size, shuffle, seed)


def probe_loader(examples, tokenizer, candidates, **kwargs):
    return cloze_loader(examples, tokenizer, "subject", [candidates.index(ex["answer"]) for ex in examples], **kwargs)


def discrete_probe_scores(backbone, tokenizer, task) -> dict:
    """{relation: [(prompt, validation accuracy, test accuracy), ...]} for the hand-written prompts (zero-shot)."""
    mode, scores = backbone.config.mode, {}
    for relation, prompts in DISCRETE_PROMPTS.items():
        (_, val, test), candidates = probe_splits(task, relation)
        scores[relation] = []
        for prompt in prompts:
            config = PromptEncoderConfig(num_virtual_tokens=0, encoder_reparameterization_type="NONE",
                                         template=discrete_template(prompt, mode))
            model = PTuningModel(backbone, tokenizer, config, candidates)
            scores[relation].append((prompt, *(evaluate_accuracy(model, probe_loader(split, tokenizer, candidates))
                                               for split in (val, test))))
    return scores


def weighted(per_relation: dict, counts: dict) -> float:
    """Accuracy over all probes from per-relation accuracies."""
    return sum(per_relation[r] * counts[r] for r in per_relation) / sum(counts[r] for r in per_relation)


# Peak learning rate per encoder type: the protocol's sweeps at 20 epochs (GPT, seed 0, validation; section 7 prints
# them, from benchmarks/protocol/probe/<method>/sweep/). MLP is not swept: it takes the LSTM's.
P_TUNING_LR = {"LSTM": 0.001, "MLP": 0.001, "NONE": 0.003}
PROBE_EPOCHS, PROBE_BATCH_SIZE = 20, 32


def probe_config(kind: str = "LSTM", anchors: bool = False, mode: str = "gpt", relation: str = "profession",
                 **kwargs) -> PromptEncoderConfig:
    """The probe's template: (3, X, 3, Y) for GPT, (3, X, 3, Y, 3) for BERT. With `anchors`, the last word of the
    relation's hand-written prompt ("from", "a", "in", ...) stands right before the answer slot."""
    anchor = [" " + DISCRETE_PROMPTS[relation][0].split()[-1]] if anchors else []
    template = [3, INPUT_SLOT, 3, *anchor, ANSWER_SLOT] + ([3] if mode == "bert" else [])
    return PromptEncoderConfig(num_virtual_tokens=sum(p for p in template if isinstance(p, int)),
                               encoder_reparameterization_type=kind, template=template, **kwargs)


def p_tune_probe(backbone, tokenizer, task, *, kind: str = "LSTM", anchors: bool = False, lr: Optional[float] = None,
                 epochs: int = PROBE_EPOCHS, batch_size: int = PROBE_BATCH_SIZE, seed: int = 0,
                 progress: bool = True) -> dict:
    """Train one prompt per relation on the frozen backbone; accuracy over all relations' probes.

    Returns {"validation", "test", "train_accuracy", "majority", "curve" (validation after each epoch),
    "per_relation": {relation: {"train", "validation", "test"}}, "models", "losses", "seconds"}.
    """
    import time
    import warnings

    from minitransformer.recipes import SCHEDULE, WARMUP_RATIO
    from minitransformer.training import PLATEAU_MARGIN, majority_share, set_seed, train

    lr = P_TUNING_LR[kind] if lr is None else lr
    mode, started = backbone.config.mode, time.perf_counter()
    out = {"per_relation": {}, "models": {}, "losses": {}}
    counts, curves, majority = {"train": {}, "validation": {}, "test": {}}, {}, {}
    for relation in DISCRETE_PROMPTS:
        splits, candidates = probe_splits(task, relation)
        set_seed(seed)
        model = PTuningModel(backbone, tokenizer, probe_config(kind, anchors, mode, relation), candidates)
        loader = probe_loader(splits[0], tokenizer, candidates, batch_size=batch_size, shuffle=True, seed=seed)
        val_loader = probe_loader(splits[1], tokenizer, candidates, batch_size=64)
        result = train(model, loader, epochs=epochs, lr=lr, warmup_ratio=WARMUP_RATIO, schedule=SCHEDULE,
                       eval_fn=lambda m: evaluate_accuracy(m, val_loader), desc=relation, progress=progress)
        out["per_relation"][relation] = {"train": result.train_accuracy, "validation": result.curve[-1],
                                         "test": evaluate_accuracy(model, probe_loader(splits[2], tokenizer, candidates))}
        for split, examples in zip(("train", "validation", "test"), splits):
            counts[split][relation] = len(examples)
        curves[relation], majority[relation] = result.curve, majority_share(loader)
        out["models"][relation], out["losses"][relation] = model, result.losses
    for split in ("train", "validation", "test"):
        out["train_accuracy" if split == "train" else split] = weighted(
            {r: s[split] for r, s in out["per_relation"].items()}, counts[split])
    out["majority"] = weighted(majority, counts["train"])
    out["curve"] = [weighted({r: c[e] for r, c in curves.items()}, counts["validation"]) for e in range(epochs)]
    out["seconds"] = time.perf_counter() - started
    if out["train_accuracy"] < out["majority"] + PLATEAU_MARGIN:
        warnings.warn(f"P-tuning ({kind}) reached training accuracy {out['train_accuracy']:.3f}, at the majority share "
                      f"{out['majority']:.3f}: it did not train. Raise the learning rate or train longer.", PlateauWarning)
    return out


@add_to_class(PTuningModel)
@torch.no_grad()
def export_prompt(self) -> PromptEncoderConfig:
    """Compute the prompt once, keep only its P x d numbers, drop the encoder (in place). Returns the config to
    save: this model's config with inference_mode=True."""
    vectors = self.prompt_encoder().detach().clone()  # (P, d): the encoder's output, computed while it exists
    config = PromptEncoderConfig(**{**self.peft_config.__dict__, "inference_mode": True})
    self.attach_prompt(config)  # a table of P vectors replaces the LSTM and the MLP
    self.prompt_encoder.embedding.weight.copy_(vectors)
    return config


SENTIMENT_VERBALIZER = ["bad", "good"]  # label 0, label 1


def p_tune_sentiment(backbone, tokenizer, *, kind: str = "LSTM", lr: Optional[float] = None, seed: int = 0,
                     n_train: int = 1000, epochs: Optional[int] = None, batch_size: int = 32,
                     progress: bool = True) -> dict:
    """P-tune a (3, X, 3, Y) template on the sentiment reviews (the standard recipe's data, schedule and budget);
    validation accuracy after every epoch."""
    from minitransformer.recipes import EPOCHS, SCHEDULE, WARMUP_RATIO

    epochs = EPOCHS if epochs is None else epochs
    from minitransformer.training import majority_share, set_seed, train
    from minitransformer.world import load_task

    task, mode = load_task("sentiment"), backbone.config.mode
    template = [3, INPUT_SLOT, 3, ANSWER_SLOT] + (["."] if mode == "bert" else [])
    set_seed(seed)
    model = PTuningModel(backbone, tokenizer, PromptEncoderConfig(template=template, encoder_reparameterization_type=kind),
                         SENTIMENT_VERBALIZER)
    loader = cloze_loader(task.train[:n_train], tokenizer, "text", [ex["label"] for ex in task.train[:n_train]],
                          batch_size=batch_size, shuffle=True, seed=seed)
    val_loader = cloze_loader(task.validation, tokenizer, "text", [ex["label"] for ex in task.validation], batch_size=64)
    result = train(model, loader, epochs=epochs, lr=P_TUNING_LR[kind] if lr is None else lr, warmup_ratio=WARMUP_RATIO,
                   schedule=SCHEDULE, eval_fn=lambda m: evaluate_accuracy(m, val_loader), desc=f"sentiment {kind}",
                   progress=progress)
    return {"model": model, "validation": result.curve[-1], "curve": result.curve, "losses": result.losses,
            "train_accuracy": result.train_accuracy, "majority": majority_share(loader), "seconds": result.seconds}
