"""A small, readable transformer: the frozen backbone every chapter adapts.

One file, in the spirit of nanoGPT. The same code runs in two modes:

* ``mode="gpt"``: causal self-attention, trained as a language model (next token).
* ``mode="bert"``: bidirectional self-attention, trained as a masked language model.

Shapes use these letters throughout:

    B  batch size            T  new tokens in this call     P  past (cached or prefix) tokens
    d  d_model               H  attention heads             h  head size = d / H
    V  vocabulary size       L  layers

The names of the sub-modules are the hooks the PEFT chapters use
(``target_modules`` in LoRA, bias names in BitFit, ...):

    backbone.tok_emb, backbone.pos_emb
    backbone.blocks.{i}.ln_1, .attn.{q_proj,k_proj,v_proj,out_proj}
    backbone.blocks.{i}.ln_2, .mlp.{fc1 (d->4d), fc2 (4d->d)}
    backbone.ln_f             (the LM head is tied to tok_emb)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

# One (key, value) pair per layer, each (B, H, P, h).
PastKeyValues = tuple[tuple[torch.Tensor, torch.Tensor], ...]

MODES = ("gpt", "bert")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message says how to fix it."""


@dataclass
class TransformerConfig:
    vocab_size: int = 2048
    max_seq_len: int = 128  # context length: past/prefix tokens + new tokens
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int = 512  # hidden size of the MLP, 4 * d_model by convention
    dropout: float = 0.1
    mode: str = "gpt"  # "gpt" (causal) or "bert" (bidirectional)
    pad_token_id: int = 0
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_seq_len", "d_model", "n_layers", "n_heads", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"TransformerConfig.{name} must be a positive integer, got {value!r}.")
        if self.mode not in MODES:
            raise ConfigError(f"TransformerConfig.mode must be one of {MODES}, got {self.mode!r}.")
        if self.d_model % self.n_heads != 0:
            raise ConfigError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                f"choose n_heads among {[h for h in range(1, self.d_model + 1) if self.d_model % h == 0][:8]}..."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout!r}.")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ConfigError(f"pad_token_id={self.pad_token_id} is outside the vocabulary (size {self.vocab_size}).")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TransformerConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"Unknown TransformerConfig field(s) {unknown}; valid fields are {sorted(known)}.")
        return cls(**values)


@dataclass
class ModelOutput:
    hidden_states: torch.Tensor  # (B, T, d) after the final LayerNorm
    logits: Optional[torch.Tensor] = None  # (B, T, V) from the tied LM head
    loss: Optional[torch.Tensor] = None
    past_key_values: Optional[PastKeyValues] = None


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v/out projections (all with bias)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        d = config.d_model
        self.n_heads, self.head_dim, self.causal = config.n_heads, config.head_dim, config.mode == "gpt"
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, h)

    def forward(
        self,
        x: torch.Tensor,  # (B, T, d)
        key_padding_mask: torch.Tensor,  # (B, P+T) bool, True = a real token that may be attended to
        past: Optional[tuple[torch.Tensor, torch.Tensor]] = None,  # ((B, H, P, h), (B, H, P, h))
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        B, T, _ = x.shape
        q = self._split_heads(self.q_proj(x))  # (B, H, T, h)
        k = self._split_heads(self.k_proj(x))  # (B, H, T, h)
        v = self._split_heads(self.v_proj(x))  # (B, H, T, h)
        if past is not None:
            past_k, past_v = past
            k = torch.cat([past_k.to(k.dtype), k], dim=2)  # (B, H, P+T, h)
            v = torch.cat([past_v.to(v.dtype), v], dim=2)
        P = k.shape[2] - T

        scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, H, T, P+T)
        allowed = key_padding_mask[:, None, None, :]  # (B, 1, 1, P+T)
        if self.causal:
            # Query i (absolute position P+i) sees keys 0..P+i: all the past, and itself and earlier.
            query_pos = torch.arange(T, device=x.device)[:, None] + P
            key_pos = torch.arange(P + T, device=x.device)[None, :]
            allowed = allowed & (key_pos <= query_pos)  # (B, 1, T, P+T)
        # A large negative number instead of -inf keeps fully masked rows (padding queries) finite.
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        weights = self.attn_dropout(F.softmax(scores, dim=-1))  # (B, H, T, P+T)
        out = (weights @ v).transpose(1, 2).reshape(B, T, -1)  # (B, T, d)
        return self.resid_dropout(self.out_proj(out)), (k, v)


class MLP(nn.Module):
    """Position-wise feed-forward network: d -> 4d -> d with a GELU."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.d_model, config.d_ff)  # the "intermediate" layer, d -> 4d
        self.fc2 = nn.Linear(config.d_ff, config.d_model)  # back down, 4d -> d
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        return self.dropout(self.fc2(F.gelu(self.fc1(x))))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.attn = SelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(self, x, key_padding_mask, past=None):
        attn_out, present = self.attn(self.ln_1(x), key_padding_mask, past)
        x = x + attn_out
        x = x + self.mlp(self.ln_2(x))
        return x, present


class MiniTransformer(nn.Module):
    """Token + learned position embeddings, L blocks, a final LayerNorm and a tied LM head."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise ConfigError(f"MiniTransformer needs a TransformerConfig, got {type(config).__name__}.")
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_seq_len, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def device(self) -> torch.device:
        return self.tok_emb.weight.device

    def lm_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The tied LM head: (B, T, d) -> (B, T, V) using the token embedding matrix."""
        return hidden_states @ self.tok_emb.weight.T

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,  # (B, T) token ids
        attention_mask: Optional[torch.Tensor] = None,  # (B, T) or (B, P+T); 1 = real token, 0 = padding
        *,
        inputs_embeds: Optional[torch.Tensor] = None,  # (B, T, d), instead of input_ids (soft prompts)
        past_key_values: Optional[PastKeyValues] = None,  # L pairs of (B, H, P, h): a KV cache or a prefix
        labels: Optional[torch.Tensor] = None,  # (B, T) LM targets, -100 = ignore (already aligned)
        use_cache: bool = False,
        return_logits: bool = True,
    ) -> ModelOutput:
        cfg = self.config
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids (B, T) or inputs_embeds (B, T, d).")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be 2-D (batch, seq_len), got shape {tuple(input_ids.shape)}.")
            if input_ids.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"input_ids must be integer token ids, got dtype {input_ids.dtype}.")
            if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= cfg.vocab_size):
                raise ValueError(
                    f"input_ids contain ids outside [0, {cfg.vocab_size}): min {int(input_ids.min())}, "
                    f"max {int(input_ids.max())}. Was the text encoded with this model's tokenizer?"
                )
            B, T = input_ids.shape
        else:
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != cfg.d_model:
                raise ValueError(
                    f"inputs_embeds must have shape (batch, seq_len, {cfg.d_model}), got {tuple(inputs_embeds.shape)}."
                )
            B, T = inputs_embeds.shape[:2]

        P = self._check_past(past_key_values, B)
        if P + T > cfg.max_seq_len:
            raise ValueError(
                f"{P} past/prefix tokens + {T} new tokens = {P + T} exceeds the context length "
                f"max_seq_len={cfg.max_seq_len}. Truncate the input or use a shorter prefix."
            )
        key_padding_mask = self._key_padding_mask(attention_mask, B, P, T)  # (B, P+T) bool

        # Real tokens' positions start after the past/prefix tokens, exactly as with a KV cache.
        positions = torch.arange(P, P + T, device=self.device)  # (T,)
        tok = self.tok_emb(input_ids) if inputs_embeds is None else inputs_embeds
        x = self.drop(tok + self.pos_emb(positions))  # (B, T, d)

        presents = []
        for i, block in enumerate(self.blocks):
            x, present = block(x, key_padding_mask, None if past_key_values is None else past_key_values[i])
            presents.append(present)
        hidden = self.ln_f(x)  # (B, T, d)

        logits = self.lm_logits(hidden) if (return_logits or labels is not None) else None
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        return ModelOutput(hidden, logits, loss, tuple(presents) if use_cache else None)

    def _check_past(self, past_key_values: Optional[PastKeyValues], batch_size: int) -> int:
        if past_key_values is None:
            return 0
        cfg = self.config
        if len(past_key_values) != cfg.n_layers:
            raise ValueError(f"past_key_values needs one (key, value) pair per layer: {cfg.n_layers}, got {len(past_key_values)}.")
        expected = (batch_size, cfg.n_heads, None, cfg.head_dim)
        P = past_key_values[0][0].shape[2]
        for i, pair in enumerate(past_key_values):
            for name, t in zip(("key", "value"), pair):
                if t.dim() != 4 or t.shape[0] != batch_size or t.shape[1] != cfg.n_heads or t.shape[3] != cfg.head_dim or t.shape[2] != P:
                    raise ValueError(
                        f"past_key_values[{i}] {name} has shape {tuple(t.shape)}; expected "
                        f"(batch={batch_size}, n_heads={cfg.n_heads}, P={P}, head_dim={cfg.head_dim}). "
                        "Expand a learned prefix to the batch size before passing it."
                    )
        return P

    def _key_padding_mask(self, attention_mask, B: int, P: int, T: int) -> torch.Tensor:
        if attention_mask is None:
            return torch.ones(B, P + T, dtype=torch.bool, device=self.device)
        if attention_mask.dim() != 2 or attention_mask.shape[0] != B or attention_mask.shape[1] not in (T, P + T):
            raise ValueError(
                f"attention_mask must have shape (batch={B}, {T}) or (batch={B}, past+new={P + T}), "
                f"got {tuple(attention_mask.shape)}."
            )
        mask = attention_mask.to(self.device).bool()
        if mask.shape[1] == T and P > 0:  # the past/prefix is always visible
            mask = torch.cat([torch.ones(B, P, dtype=torch.bool, device=self.device), mask], dim=1)
        return mask

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,  # (B, T) prompts of equal length
        max_new_tokens: int = 20,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: Optional[int] = None,
        eos_token_id: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        use_cache: bool = True,
        past_key_values: Optional[PastKeyValues] = None,
    ) -> torch.Tensor:
        """Greedy decoding (default) or sampling, with a KV cache. Returns (B, T + new)."""
        if self.config.mode != "gpt":
            raise ValueError("generate() needs a causal model (mode='gpt'); a BERT-mode model fills in [MASK] tokens instead.")
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(f"input_ids must be a non-empty (batch, seq_len) tensor, got shape {tuple(input_ids.shape)}.")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}; use do_sample=False for greedy decoding.")
        was_training = self.training
        self.eval()
        prefix = past_key_values  # e.g. a learned prefix that stays in front of everything
        P0 = 0 if prefix is None else prefix[0][0].shape[2]
        if P0 + input_ids.shape[1] + max_new_tokens > self.config.max_seq_len:
            raise ValueError(
                f"prefix {P0} + prompt {input_ids.shape[1]} + max_new_tokens {max_new_tokens} exceeds "
                f"max_seq_len={self.config.max_seq_len}; shorten the prompt or ask for fewer tokens."
            )
        tokens, past, step_input = input_ids, prefix, input_ids
        finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        for _ in range(max_new_tokens):
            if use_cache:
                out = self(step_input, past_key_values=past, use_cache=True)
                past = out.past_key_values
            else:
                out = self(tokens, past_key_values=prefix)
            logits = out.logits[:, -1, :]  # (B, V)
            if do_sample:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                next_token = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)  # (B, 1)
            else:
                next_token = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            if eos_token_id is not None:
                next_token = next_token.masked_fill(finished[:, None], eos_token_id)
                finished |= next_token.squeeze(1) == eos_token_id
            tokens = torch.cat([tokens, next_token], dim=1)
            step_input = next_token
            if eos_token_id is not None and finished.all():
                break
        self.train(was_training)
        return tokens


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token in each right-padded row: (B, T) -> (B,)."""
    return attention_mask.long().sum(dim=1) - 1


class SequenceClassifier(nn.Module):
    """Backbone + linear head on one pooled vector.

    GPT mode pools the last real token (it has seen the whole sequence); BERT mode pools
    the first token ([CLS]).
    """

    def __init__(self, backbone: MiniTransformer, num_labels: int, dropout: float = 0.1):
        super().__init__()
        if num_labels < 2:
            raise ConfigError(f"num_labels must be at least 2, got {num_labels}.")
        self.backbone = backbone
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.config.d_model, num_labels)

    def pool(self, hidden: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
        if self.backbone.config.mode == "bert":
            return hidden[:, 0]  # (B, d)
        if attention_mask is None:
            return hidden[:, -1]
        mask = attention_mask[:, -hidden.shape[1]:]  # drop a prefix part of the mask, if any
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(mask)]

    def forward(self, input_ids=None, attention_mask=None, *, inputs_embeds=None, past_key_values=None, labels=None):
        out = self.backbone(
            input_ids, attention_mask, inputs_embeds=inputs_embeds, past_key_values=past_key_values, return_logits=False
        )
        logits = self.head(self.dropout(self.pool(out.hidden_states, attention_mask)))  # (B, num_labels)
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return ModelOutput(out.hidden_states, logits, loss)


class TokenClassifier(nn.Module):
    """Backbone + linear head on every token (e.g. BIO tags for named entities)."""

    def __init__(self, backbone: MiniTransformer, num_labels: int, dropout: float = 0.1):
        super().__init__()
        if num_labels < 2:
            raise ConfigError(f"num_labels must be at least 2, got {num_labels}.")
        self.backbone = backbone
        self.num_labels = num_labels
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.config.d_model, num_labels)

    def forward(self, input_ids=None, attention_mask=None, *, inputs_embeds=None, past_key_values=None, labels=None):
        out = self.backbone(
            input_ids, attention_mask, inputs_embeds=inputs_embeds, past_key_values=past_key_values, return_logits=False
        )
        logits = self.head(self.dropout(out.hidden_states))  # (B, T, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, self.num_labels), labels.reshape(-1), ignore_index=-100)
        return ModelOutput(out.hidden_states, logits, loss)
