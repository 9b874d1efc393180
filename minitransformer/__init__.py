"""minitransformer: the small, hand-written GPT/BERT-style backbone that every chapter adapts."""

from .checkpoint import CheckpointError, load_checkpoint, load_pretrained, model_card, save_checkpoint
from .model import (ConfigError, MiniTransformer, ModelOutput, SequenceClassifier, TokenClassifier,
                    TransformerConfig)
from .peft import changed_tensors, print_trainable_parameters, state_fingerprint
from .measure import compare_latency, measure_latency, training_state_memory
from .training import count_parameters, freeze, get_device, set_seed, train

__all__ = [
    "CheckpointError", "ConfigError", "MiniTransformer", "ModelOutput", "SequenceClassifier", "TokenClassifier",
    "TransformerConfig", "changed_tensors", "compare_latency", "count_parameters", "freeze", "get_device", "load_checkpoint",
    "load_pretrained", "measure_latency", "model_card", "print_trainable_parameters", "save_checkpoint",
    "set_seed", "state_fingerprint", "train", "training_state_memory",
]
