"""Generated from notebooks/08_prefix_tuning.ipynb by `python -m curriculum.export`.

Do not edit by hand.
"""


import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar, Optional

import torch
import torch.nn as nn

from minitransformer.model import MiniTransformer, ModelOutput, PastKeyValues
from minitransformer.peft import PeftConfig, print_trainable_parameters


@dataclass
class PrefixTuningConfig(PeftConfig):
    """Prefix tuning settings, with the names Hugging Face PEFT uses.

    token_dim, num_layers and num_attention_heads describe the backbone; left at None they are read
    from it (`for_backbone`). `embedding_only=True` is this chapter's ablation: the P vectors are input
    embeddings (prompt tuning) instead of keys and values in every layer.
    """

    peft_type: ClassVar[str] = "PREFIX_TUNING"
    num_virtual_tokens: int = 10  # P
    token_dim: Optional[int] = None  # d
    num_layers: Optional[int] = None  # L
    num_attention_heads: Optional[int] = None  # H
    encoder_hidden_size: int = 128  # k, the width of the reparameterisation MLP
    prefix_projection: bool = True  # True: P' -> MLP -> prefix (Li & Liang); False: the prefix is trained directly
    embedding_only: bool = False  # True: a prefix on the embedding layer only (prompt tuning)
    modules_to_save: list[str] = field(default_factory=list, kw_only=True)  # a language model has no new head

    def __post_init__(self):
        for name in ("num_virtual_tokens", "encoder_hidden_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")

    def for_backbone(self, backbone: MiniTransformer) -> "PrefixTuningConfig":
        """A copy with token_dim, num_layers and num_attention_heads filled in from `backbone` (and checked)."""
        sizes = {"token_dim": backbone.config.d_model, "num_layers": backbone.config.n_layers,
                 "num_attention_heads": backbone.config.n_heads}
        for name, size in sizes.items():
            if getattr(self, name) not in (None, size):
                raise ValueError(f"{name}={getattr(self, name)} does not fit the backbone, whose {name} is {size}: "
                                 f"leave it at None to read it from the backbone.")
        return dataclasses.replace(self, **sizes)

    @property
    def prefix_width(self) -> int:
        """Numbers per virtual token: d for an input embedding, else a key and a value of size d in each of L layers."""
        return self.token_dim if self.embedding_only else self.num_layers * 2 * self.token_dim

    def inject(self, model: nn.Module, verbose: bool = False) -> nn.Module:
        """Give a PrefixTuningModel a fresh prefix encoder for this config (used by load_peft_model)."""
        if not isinstance(model, PrefixTuningModel):
            raise TypeError(f"Prefix tuning wraps the backbone instead of changing its layers: build "
                            f"PrefixTuningModel(backbone, config) and load the saved prefix into that, not into a "
                            f"{type(model).__name__}.")
        model.peft_config = self.for_backbone(model.backbone)
        model.prefix_encoder = PrefixEncoder(model.peft_config)
        if verbose:
            print_trainable_parameters(model)
        return model


class PrefixEncoder(nn.Module):
    """The trainable prefix: P vectors of width L*2*d, one key and one value per layer for each virtual token.

    prefix_projection=True (Li & Liang):  P' (P, d) --Linear d->k, Tanh, Linear k->L*2*d--> (P, L*2*d)
    prefix_projection=False:              a table (P, L*2*d), trained directly
    `forward(batch_size)` returns past_key_values: L pairs (key, value), each (batch_size, H, P, d/H).
    Layout of one row of the (P, L*2*d) matrix: [layer 0 key | layer 0 value | layer 1 key | ...], each
    split into H heads of size d/H (the layout of Hugging Face PEFT).
    """

    def __init__(self, config: PrefixTuningConfig):
        super().__init__()
        if config.token_dim is None or config.num_layers is None or config.num_attention_heads is None:
            raise ValueError("PrefixEncoder needs the backbone's sizes: pass config.for_backbone(backbone).")
        self.config = config
        # prefix_projection=True: self.embedding = nn.Embedding(P, d) (the matrix P') and self.transform =
        # nn.Sequential(Linear(d, k), Tanh(), Linear(k, width)); False: self.embedding = nn.Embedding(P, width)
        # and no transform. width = config.prefix_width. Keep PyTorch's default inits.
        P, d, k = config.num_virtual_tokens, config.token_dim, config.encoder_hidden_size
        if config.prefix_projection:
            self.embedding = nn.Embedding(P, d)  # P', (P, d)
            self.transform = nn.Sequential(nn.Linear(d, k), nn.Tanh(), nn.Linear(k, config.prefix_width))
        else:
            self.embedding = nn.Embedding(P, config.prefix_width)  # the prefix itself, (P, L*2*d)
            self.transform = None

    def flat_prefix(self) -> torch.Tensor:
        """The prefix as one matrix (P, width): the MLP applied to P', or the table itself."""
        weight = self.embedding.weight
        return weight if self.transform is None else self.transform(weight)

    def forward(self, batch_size: int) -> PastKeyValues:
        """past_key_values for a batch: L pairs of (batch_size, H, P, d/H), the same prefix in every row."""
        c = self.config
        if c.embedding_only:
            raise ValueError("An embedding-only prefix has no keys and values of its own: PrefixTuningModel runs "
                             "it through the backbone (get_prefix).")
        P, L, H = c.num_virtual_tokens, c.num_layers, c.num_attention_heads
        # (P, L*2*d) -> (L*2, H, P, h) -> expand to the batch -> L pairs (key, value) of (B, H, P, h).
        kv = self.flat_prefix().view(P, L * 2, H, c.token_dim // H).permute(1, 2, 0, 3)  # (L*2, H, P, h)
        kv = kv.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)  # (L*2, B, H, P, h), a view: no copy per row
        return tuple((kv[2 * i], kv[2 * i + 1]) for i in range(L))


class PrefixTuningModel(nn.Module):
    """A frozen GPT backbone behind a trainable prefix: the prefix is its past_key_values in every call.

    The backbone does the rest, as it does for a KV cache: the real tokens' positions start at P,
    and the attention mask grows by P ones (the prefix is always visible).
    """

    def __init__(self, backbone: MiniTransformer, config: PrefixTuningConfig):
        super().__init__()
        if not isinstance(backbone, MiniTransformer):
            raise TypeError(f"PrefixTuningModel wraps a MiniTransformer backbone, got {type(backbone).__name__}.")
        if config.num_virtual_tokens >= backbone.config.max_seq_len:
            raise ValueError(f"A prefix of {config.num_virtual_tokens} virtual tokens leaves no room in the context "
                             f"of {backbone.config.max_seq_len} tokens: use a shorter prefix.")
        self.backbone = backbone.requires_grad_(False)
        config.inject(self)  # sets self.peft_config and self.prefix_encoder

    @property
    def num_virtual_tokens(self) -> int:
        return self.peft_config.num_virtual_tokens

    def get_prefix(self, batch_size: int = 1) -> PastKeyValues:
        """L pairs (key, value) of (batch_size, H, P, h). An embedding-only prefix (prompt tuning) gets its keys
        and values from the frozen backbone, which reads the P embeddings as the first P tokens."""
        if self.peft_config.embedding_only:
            # Run the P embeddings through the frozen backbone as the first P tokens and keep its cache.
            prompt = self.prefix_encoder.flat_prefix()[None]  # (1, P, d)
            past = self.backbone(inputs_embeds=prompt, use_cache=True, return_logits=False).past_key_values
            return tuple((k.expand(batch_size, -1, -1, -1), v.expand(batch_size, -1, -1, -1)) for k, v in past)
        return self.prefix_encoder(batch_size)

    def forward(self, input_ids, attention_mask=None, labels=None) -> ModelOutput:
        """The backbone's forward with the prefix in front: logits (B, T, V) for the T real tokens only."""
        prefix = self.get_prefix(input_ids.shape[0])
        return self.backbone(input_ids, attention_mask, past_key_values=prefix, labels=labels)

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int = 20, **kwargs) -> torch.Tensor:
        """Greedy decoding behind the prefix: the KV cache grows after the P prefix positions."""
        with torch.no_grad():
            prefix = self.get_prefix(input_ids.shape[0])
        return self.backbone.generate(input_ids, max_new_tokens, past_key_values=prefix, **kwargs)


@torch.no_grad()
def drop_prefix_mlp(model: PrefixTuningModel) -> PrefixTuningModel:
    """After training: keep only the prefix the MLP produces, drop the MLP (in place).

    The new encoder is a plain table (P, L*2*d) holding exactly the old prefix, with
    prefix_projection=False; an embedding-only prefix becomes the keys and values the backbone
    computed from it. Generations are unchanged, and the file saved afterwards holds P*L*2*d numbers.
    """
    was_training = model.training
    model.eval()  # no dropout while the prefix is computed
    prefix = model.get_prefix(1)  # L pairs of (1, H, P, h)
    config = dataclasses.replace(model.peft_config, prefix_projection=False, embedding_only=False)
    # Turn `prefix` back into the (P, L*2*d) layout that PrefixEncoder reads (the inverse of its forward),
    # build a PrefixEncoder(config) whose table holds it, then set model.peft_config and model.prefix_encoder.
    kv = torch.stack([t[0] for pair in prefix for t in pair])  # (L*2, H, P, h)
    flat = kv.permute(2, 0, 1, 3).reshape(config.num_virtual_tokens, -1)  # (P, L*2*d)
    encoder = PrefixEncoder(config).to(flat.device)
    encoder.embedding.weight.copy_(flat)
    model.peft_config, model.prefix_encoder = config, encoder
    model.train(was_training)
    return model
