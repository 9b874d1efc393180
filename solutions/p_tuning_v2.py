"""Generated from notebooks/09_p_tuning_v2.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn as nn

from minitransformer.model import ModelOutput
from minitransformer.peft import PeftConfig, mark_modules_to_save, print_trainable_parameters, replace_module


PROMPT_DEPTHS = ("all_layers", "input")  # P-tuning v2: every layer; the comparison variants: the input only
ENCODER_TYPES = ("MLP", "LSTM")  # P-tuning's prompt encoders (input-only prompts)
PROMPT_INITS = ("RANDOM", "SAMPLE_VOCAB")  # prompt tuning's inits (input-only prompts)


@dataclass
class PTuningV2Config(PeftConfig):
    """P-tuning v2 settings, with HF PEFT's names. HF PEFT has no P-tuning v2 class: it is PrefixTuningConfig
    with prefix_projection=False. Ours registers its own peft_type, "P_TUNING_V2", beside "PREFIX_TUNING".

    token_dim, num_layers and num_attention_heads are read from the model when left None."""

    peft_type: ClassVar[str] = "P_TUNING_V2"
    num_virtual_tokens: int = 16
    token_dim: Optional[int] = None
    num_layers: Optional[int] = None
    num_attention_heads: Optional[int] = None
    prefix_projection: bool = False  # True: the prefix comes out of an MLP (prefix tuning's reparameterisation)
    encoder_hidden_size: int = 128  # hidden size of that MLP, or of P-tuning's LSTM/MLP encoder
    # The comparison variants (not P-tuning v2): prompts at the input only, as prompt tuning and P-tuning.
    prompt_depth: str = "all_layers"
    encoder_reparameterization_type: Optional[str] = None
    prompt_tuning_init: str = "RANDOM"

    def __post_init__(self):
        P = self.num_virtual_tokens
        if not isinstance(P, int) or isinstance(P, bool) or P <= 0:
            raise ValueError(f"num_virtual_tokens must be a positive integer, got {P!r}; 4 to 64 is usual.")
        if self.prompt_depth not in PROMPT_DEPTHS:
            raise ValueError(f"prompt_depth must be one of {PROMPT_DEPTHS}, got {self.prompt_depth!r}.")
        if self.encoder_reparameterization_type not in (None, *ENCODER_TYPES):
            raise ValueError(f"encoder_reparameterization_type must be None or one of {ENCODER_TYPES}, "
                             f"got {self.encoder_reparameterization_type!r}.")
        if self.prompt_depth == "all_layers" and self.encoder_reparameterization_type is not None:
            raise ValueError("encoder_reparameterization_type is for input-only prompts (P-tuning); reparameterise "
                             "deep prompts with prefix_projection=True instead.")
        if self.prompt_tuning_init not in PROMPT_INITS:
            raise ValueError(f"prompt_tuning_init must be one of {PROMPT_INITS}, got {self.prompt_tuning_init!r}.")
        if not isinstance(self.encoder_hidden_size, int) or self.encoder_hidden_size <= 0:
            raise ValueError(f"encoder_hidden_size must be a positive integer, got {self.encoder_hidden_size!r}.")

    def inject(self, model: nn.Module, verbose: bool = False) -> nn.Module:
        return inject_p_tuning_v2(model, self, verbose=verbose)


def prefix_to_past_key_values(prefix: torch.Tensor, num_layers: int, num_heads: int) -> tuple:
    """(B, P, L*2*d) -> L pairs (key, value), each (B, H, P, h), in HF PEFT's layout: along the last dimension,
    layer i's key is block 2i and its value block 2i+1 (each d = H*h wide)."""
    B, P, width = prefix.shape
    if width % (2 * num_layers * num_heads) != 0:
        raise ValueError(f"a prefix of width {width} cannot be split into {num_layers} layers x 2 (key, value) x "
                         f"{num_heads} heads: its width must be num_layers * 2 * token_dim.")
    head_dim = width // (2 * num_layers * num_heads)
    x = prefix.view(B, P, 2 * num_layers, num_heads, head_dim)  # (B, P, 2L, H, h)
    x = x.permute(2, 0, 3, 1, 4)  # (2L, B, H, P, h)
    return tuple((x[2 * i], x[2 * i + 1]) for i in range(num_layers))


class DeepPrompt(nn.Module):
    """The deep prompt: P trainable vectors for every layer's keys and values.

    prefix_projection=False (P-tuning v2's default): one table `embedding` of shape (P, L*2*d).
    prefix_projection=True: a table (P, d) and an MLP d -> encoder_hidden_size -> L*2*d with a tanh,
    as HF PEFT's PrefixEncoder (prefix tuning's reparameterisation)."""

    def __init__(self, config: PTuningV2Config):
        super().__init__()
        self.config = config
        P, d, L = config.num_virtual_tokens, config.token_dim, config.num_layers
        # Create self.embedding (an nn.Embedding whose weight is the table) and self.transform (None, or the MLP).
        if config.prefix_projection:
            self.embedding = nn.Embedding(P, d)
            self.transform = nn.Sequential(nn.Linear(d, config.encoder_hidden_size), nn.Tanh(),
                                           nn.Linear(config.encoder_hidden_size, L * 2 * d))
        else:
            self.embedding = nn.Embedding(P, L * 2 * d)  # N(0, 1) init, as nn.Embedding (and HF PEFT)
            self.transform = None

    def forward(self, batch_size: int) -> tuple:
        """The prompt for a batch: L pairs (key, value) of shape (B, H, P, h), the same for every example."""
        # The table (through self.transform, if any), expanded over the batch, laid out per layer.
        table = self.embedding.weight  # (P, L*2*d), or (P, d) with the projection
        if self.transform is not None:
            table = self.transform(table)  # (P, L*2*d)
        prefix = table.unsqueeze(0).expand(batch_size, -1, -1)  # (B, P, L*2*d), no copy
        return prefix_to_past_key_values(prefix, self.config.num_layers, self.config.num_attention_heads)


class InputPrompt(nn.Module):
    """The comparison variants: P vectors at the input only. Prompt tuning (Lester et al.) learns them directly
    (prompt_tuning_init "RANDOM", or "SAMPLE_VOCAB": start from the embeddings of random vocabulary tokens);
    P-tuning (Liu et al., 2021) produces them with a prompt encoder, an MLP or a bidirectional LSTM then an MLP."""

    def __init__(self, config: PTuningV2Config, word_embeddings: Optional[nn.Embedding] = None):
        super().__init__()
        P, d, h = config.num_virtual_tokens, config.token_dim, config.encoder_hidden_size
        self.embedding = nn.Embedding(P, d)
        if config.prompt_tuning_init == "SAMPLE_VOCAB" and word_embeddings is not None:
            ids = torch.randint(0, word_embeddings.num_embeddings, (P,))
            self.embedding.weight.data.copy_(word_embeddings.weight[ids].detach())
        kind = config.encoder_reparameterization_type
        self.lstm = nn.LSTM(d, h, num_layers=2, bidirectional=True, batch_first=True) if kind == "LSTM" else None
        width = 2 * h if kind == "LSTM" else d
        self.mlp = nn.Sequential(nn.Linear(width, h), nn.ReLU(), nn.Linear(h, d)) if kind else None

    def forward(self, batch_size: int) -> torch.Tensor:
        x = self.embedding.weight.unsqueeze(0)  # (1, P, d)
        if self.lstm is not None:
            x = self.lstm(x)[0]  # (1, P, 2h)
        if self.mlp is not None:
            x = self.mlp(x)  # (1, P, d)
        return x.expand(batch_size, -1, -1)  # (B, P, d)


class PromptedBackbone(nn.Module):
    """The frozen backbone (kept as `base_layer`, like a LoRA layer keeps its nn.Linear) with a learned prompt.

    Deep prompts (P-tuning v2) enter every layer as past_key_values; the backbone grows the mask by P and starts
    the real tokens' positions at P, exactly as with a KV cache. Input prompts are prepended to the token
    embeddings and their outputs dropped again. Either way the task head sees (B, T, d)."""

    def __init__(self, base_layer: nn.Module, config: PTuningV2Config):
        super().__init__()
        self.base_layer = base_layer
        self.prompt_config = config
        if config.prompt_depth == "all_layers":
            self.prompt_encoder = DeepPrompt(config)
        else:
            self.prompt_encoder = InputPrompt(config, base_layer.tok_emb)

    @property
    def config(self):  # the heads read backbone.config (e.g. the mode, for pooling)
        return self.base_layer.config

    def forward(self, input_ids=None, attention_mask=None, *, inputs_embeds=None, past_key_values=None,
                return_logits: bool = True, **kwargs) -> ModelOutput:
        if past_key_values is not None:
            raise ValueError("This backbone already puts a learned prompt in front of the input; it cannot take "
                             "past_key_values too. Call .base_layer to pass your own.")
        x = input_ids if input_ids is not None else inputs_embeds
        if x is None:
            raise ValueError("Pass input_ids (B, T) or inputs_embeds (B, T, d).")
        B, T = x.shape[:2]
        P, max_len = self.prompt_config.num_virtual_tokens, self.config.max_seq_len
        # 1. Refuse a prompt plus input longer than the context, naming num_virtual_tokens, max_seq_len and the fix.
        # 2. Deep prompts: call the base layer with past_key_values=self.prompt_encoder(B) and return its output.
        if P + T > max_len:
            raise ValueError(f"num_virtual_tokens={P} + {T} input tokens = {P + T} exceeds the context length "
                             f"max_seq_len={max_len}: truncate the inputs to {max_len - P} tokens or use fewer "
                             f"virtual tokens.")
        if self.prompt_config.prompt_depth == "all_layers":
            return self.base_layer(input_ids, attention_mask, inputs_embeds=inputs_embeds,
                                   past_key_values=self.prompt_encoder(B), return_logits=return_logits, **kwargs)
        embeds = self.base_layer.tok_emb(input_ids) if inputs_embeds is None else inputs_embeds  # (B, T, d)
        embeds = torch.cat([self.prompt_encoder(B).to(embeds.dtype), embeds], dim=1)  # (B, P+T, d)
        if attention_mask is not None:
            attention_mask = torch.cat([attention_mask.new_ones(B, P), attention_mask], dim=1)  # (B, P+T)
        out = self.base_layer(inputs_embeds=embeds, attention_mask=attention_mask, return_logits=return_logits, **kwargs)
        out.hidden_states = out.hidden_states[:, P:]  # (B, T, d): the prompt positions' outputs are dropped
        if out.logits is not None:
            out.logits = out.logits[:, P:]
        return out


def inject_p_tuning_v2(model: nn.Module, config: PTuningV2Config, verbose: bool = True) -> nn.Module:
    """Freeze `model` (a SequenceClassifier or TokenClassifier), put a learned prompt in front of its backbone
    (in place, so load_peft_model can use it), and let config.modules_to_save (the task head) train."""
    backbone = model.backbone
    cfg = backbone.config
    # Fill token_dim, num_layers, num_attention_heads from the backbone (d_model, n_layers, n_heads) when None,
    # and refuse a value that does not fit; then freeze the model, wrap its backbone in a PromptedBackbone
    # (replace_module) and mark the modules to save.
    for name, value, expected in (("token_dim", config.token_dim, cfg.d_model), ("num_layers", config.num_layers, cfg.n_layers),
                                  ("num_attention_heads", config.num_attention_heads, cfg.n_heads)):
        if value is not None and value != expected:
            raise ValueError(f"PTuningV2Config.{name}={value} does not fit this backbone ({expected}); leave it None "
                             f"to read it from the model.")
    config.token_dim, config.num_layers, config.num_attention_heads = cfg.d_model, cfg.n_layers, cfg.n_heads
    model.requires_grad_(False)
    replace_module(model, "backbone", PromptedBackbone(backbone, config))
    mark_modules_to_save(model, config.modules_to_save)
    if verbose:
        print_trainable_parameters(model)
    return model
