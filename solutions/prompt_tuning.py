"""Generated from notebooks/06_prompt_tuning.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


import math
from dataclasses import dataclass, field
from typing import ClassVar, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from minitransformer.model import ModelOutput
from minitransformer.peft import PeftConfig, print_trainable_parameters


class SoftPrompt(nn.Module):
    """P trainable vectors in the embedding space, prepended to every input: the whole of prompt tuning."""

    def __init__(self, num_virtual_tokens: int, token_dim: int, init: Optional[torch.Tensor] = None):
        super().__init__()
        if not isinstance(num_virtual_tokens, int) or num_virtual_tokens < 1:
            raise ValueError(f"num_virtual_tokens must be a positive integer, got {num_virtual_tokens!r}.")
        if init is None:
            init = torch.randn(num_virtual_tokens, token_dim) * 0.02
        if tuple(init.shape) != (num_virtual_tokens, token_dim):
            raise ValueError(f"the initial prompt has shape {tuple(init.shape)}; expected "
                             f"(num_virtual_tokens={num_virtual_tokens}, token_dim={token_dim}).")
        self.weight = nn.Parameter(init.detach().clone().float())  # (P, d)

    @property
    def num_virtual_tokens(self) -> int:
        return self.weight.shape[0]

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                prompts: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, d) embeddings and (B, T) mask -> (B, P+T, d) and (B, P+T): the prompt in front, always visible.

        `prompts` (B, P, d), if given, replaces this module's own prompt row by row (mixed-task batches).
        """
        B, T, d = inputs_embeds.shape
        if attention_mask is None:
            attention_mask = torch.ones(B, T, dtype=torch.long, device=inputs_embeds.device)
        if prompts is None:
            prompts = self.weight.expand(B, -1, -1)  # (B, P, d): the same prompt for every row
        P = prompts.shape[1]
        embeds = torch.cat([prompts.to(inputs_embeds.dtype), inputs_embeds], dim=1)  # (B, P+T, d)
        ones = torch.ones(B, P, dtype=attention_mask.dtype, device=attention_mask.device)
        mask = torch.cat([ones, attention_mask], dim=1)  # (B, P+T): the prompt is never padding
        return embeds, mask


def verbalizer_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """The token id of each label word. Every word must be exactly one token of the tokenizer."""
    if len(words) < 2:
        raise ValueError(f"a verbaliser needs one word per class, at least 2; got {list(words)!r}.")
    ids = []
    for word in words:
        encoding = tokenizer.encode(word, add_special_tokens=False)
        if len(encoding.ids) != 1:
            raise ValueError(f"verbaliser word {word!r} is {len(encoding.ids)} tokens {encoding.tokens}, not one; "
                             f"the readout compares one logit per class. Choose a word that is a single token "
                             f"(with its leading space, e.g. ' good').")
        ids.append(encoding.ids[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"verbaliser words {list(words)!r} map to the same token ids {ids}; use distinct words.")
    return ids


def verbalizer_logits(hidden_states: torch.Tensor, attention_mask: torch.Tensor, lm_weight: torch.Tensor,
                      label_ids: torch.Tensor) -> torch.Tensor:
    """Class logits the paper's way: the frozen LM head's logits of the label words at the last real position.

    hidden_states (B, T, d) after the final LayerNorm; attention_mask (B, T), right-padded; lm_weight (V, d), the
    tied token embeddings; label_ids (C,). Returns (B, C): the next-token logits of the C label words.
    """
    last = attention_mask.long().sum(dim=1) - 1  # (B,) the last real token: it predicts the word after the input
    h = hidden_states[torch.arange(hidden_states.shape[0], device=hidden_states.device), last]  # (B, d)
    return h @ lm_weight[label_ids].T  # (B, C) = rows of h @ E^T, only the label words' columns


PROMPT_TUNING_INITS = ("RANDOM", "SAMPLE_VOCAB", "TEXT")


@dataclass
class PromptTuningConfig(PeftConfig):
    """Prompt tuning (Lester et al., 2021) with HF PEFT's names, plus the verbaliser our classifier reads."""

    peft_type: ClassVar[str] = "PROMPT_TUNING"
    num_virtual_tokens: int = 20
    token_dim: Optional[int] = None  # d; filled in from the backbone when None
    prompt_tuning_init: str = "RANDOM"
    prompt_tuning_init_text: Optional[str] = None
    verbalizer: list[str] = field(default_factory=lambda: [" bad", " good"])  # one single-token word per class
    init_seed: int = 0  # for RANDOM and SAMPLE_VOCAB
    modules_to_save: list[str] = field(default_factory=list, kw_only=True)  # nothing but the prompt trains

    def __post_init__(self):
        if not isinstance(self.num_virtual_tokens, int) or isinstance(self.num_virtual_tokens, bool) \
                or self.num_virtual_tokens < 1:
            raise ValueError(f"num_virtual_tokens must be a positive integer, got {self.num_virtual_tokens!r}.")
        if self.prompt_tuning_init not in PROMPT_TUNING_INITS:
            raise ValueError(f"prompt_tuning_init={self.prompt_tuning_init!r} is not one of {PROMPT_TUNING_INITS}.")
        if self.prompt_tuning_init == "TEXT" and not (self.prompt_tuning_init_text or "").strip():
            raise ValueError("prompt_tuning_init='TEXT' needs prompt_tuning_init_text, e.g. ' bad good' "
                             "(the class-label words); or choose 'RANDOM' or 'SAMPLE_VOCAB'.")
        if self.prompt_tuning_init != "TEXT" and self.prompt_tuning_init_text is not None:
            raise ValueError(f"prompt_tuning_init_text is only used with prompt_tuning_init='TEXT', "
                             f"not {self.prompt_tuning_init!r}; drop it or set prompt_tuning_init='TEXT'.")

    def inject(self, model: nn.Module, verbose: bool = False) -> nn.Module:
        if not isinstance(model, PromptTuningClassifier):
            raise TypeError(f"prompt tuning wraps the backbone instead of changing its layers: build "
                            f"PromptTuningClassifier(backbone, tokenizer, config) instead of injecting into a "
                            f"{type(model).__name__}.")
        return model.set_prompt(self, verbose)


def init_prompt(config: PromptTuningConfig, embeddings: torch.Tensor, tokenizer) -> torch.Tensor:
    """The initial (P, d) prompt: RANDOM (small Gaussian), SAMPLE_VOCAB (P random token embeddings) or TEXT
    (the embeddings of the init text's tokens, repeated to fill P, as HF PEFT does)."""
    P, (V, d) = config.num_virtual_tokens, embeddings.shape
    generator = torch.Generator().manual_seed(config.init_seed)
    if config.prompt_tuning_init == "RANDOM":  # the scale of the pretrained embeddings, not unit variance
        return torch.randn(P, d, generator=generator) * embeddings.std().item()
    if config.prompt_tuning_init == "SAMPLE_VOCAB":  # ordinary tokens only: ids after the special tokens
        n_special = 6
        ids = torch.randint(n_special, V, (P,), generator=generator)
    else:
        ids = torch.tensor(tokenizer.encode(config.prompt_tuning_init_text, add_special_tokens=False).ids)
        if len(ids) == 0:
            raise ValueError(f"prompt_tuning_init_text={config.prompt_tuning_init_text!r} encodes to no token.")
        ids = ids.repeat(math.ceil(P / len(ids)))[:P]
    return embeddings[ids].detach().clone()


class PromptTuningClassifier(nn.Module):
    """A frozen GPT-mode backbone, a soft prompt in front of the input, and a verbaliser readout."""

    def __init__(self, backbone: nn.Module, tokenizer, config: Optional[PromptTuningConfig] = None,
                 verbose: bool = False):
        super().__init__()
        if backbone.config.mode != "gpt":
            raise ValueError("the verbaliser readout predicts the next token: use a GPT-mode backbone.")
        self.backbone = backbone.requires_grad_(False)
        self.tokenizer = tokenizer
        self.soft_prompt: Optional[SoftPrompt] = None
        self.register_buffer("label_ids", torch.zeros(0, dtype=torch.long), persistent=False)
        if config is not None:
            self.set_prompt(config, verbose)

    def set_prompt(self, config: PromptTuningConfig, verbose: bool = False) -> "PromptTuningClassifier":
        d, max_len = self.backbone.config.d_model, self.backbone.config.max_seq_len
        if config.token_dim not in (None, d):
            raise ValueError(f"token_dim={config.token_dim} does not match the backbone's d_model={d}.")
        if config.num_virtual_tokens >= max_len:
            raise ValueError(f"num_virtual_tokens={config.num_virtual_tokens} leaves no room for the input in the "
                             f"context of max_seq_len={max_len}: the prompt and the longest input must fit together "
                             f"(for inputs of up to 96 tokens, use num_virtual_tokens <= {max_len - 96}).")
        config.token_dim = d
        self.label_ids = torch.tensor(verbalizer_ids(self.tokenizer, config.verbalizer), device=self.backbone.device)
        self.backbone.requires_grad_(False)
        init = init_prompt(config, self.backbone.tok_emb.weight, self.tokenizer)
        self.soft_prompt = SoftPrompt(config.num_virtual_tokens, d, init).to(self.backbone.device)
        if verbose:
            print_trainable_parameters(self)
        return self

    def next_token_hidden(self, input_ids, attention_mask=None, prompts=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states (B, P+T, d), mask (B, P+T)) of the prompted input through the frozen backbone."""
        if self.soft_prompt is None:
            raise RuntimeError("no soft prompt yet: pass a PromptTuningConfig or call set_prompt(config).")
        P = self.soft_prompt.num_virtual_tokens if prompts is None else prompts.shape[1]
        T, max_len = input_ids.shape[1], self.backbone.config.max_seq_len
        if P + T > max_len:
            raise ValueError(f"a soft prompt of {P} tokens + an input of {T} tokens = {P + T} exceeds the context "
                             f"(max_seq_len={max_len}): use num_virtual_tokens <= {max_len - T}, or truncate inputs to "
                             f"{max_len - P} tokens.")
        # Put the prompt in front of the token embeddings (your SoftPrompt, which also grows the mask) and run the
        # frozen backbone on those embeddings; return its hidden states and the mask that goes with them.
        embeds, mask = self.soft_prompt(self.backbone.tok_emb(input_ids), attention_mask, prompts)  # (B, P+T, d)
        out = self.backbone(inputs_embeds=embeds, attention_mask=mask, return_logits=False)
        return out.hidden_states, mask

    def forward(self, input_ids, attention_mask=None, labels=None, prompts=None, label_ids=None) -> ModelOutput:
        hidden, mask = self.next_token_hidden(input_ids, attention_mask, prompts)
        label_ids = self.label_ids if label_ids is None else label_ids
        # The class logits: your verbaliser readout. Which mask does it need here, and why?
        logits = verbalizer_logits(hidden, mask, self.backbone.tok_emb.weight, label_ids)  # (B, C)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ModelOutput(hidden, logits, loss)
