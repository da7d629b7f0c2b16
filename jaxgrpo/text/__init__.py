"""Verifiable text tasks for language-model GRPO: a character tokenizer, prompt samplers and
reward functions in pure JAX, and pass@k. See ``jaxgrpo.text.tasks`` for the task interface."""
from .datasets import from_reasoning_gym
from .evaluation import evaluate_text, heldout_prompts, pass_at_k
from .model import ModelConfig, Transformer
from .tasks import (
    TASKS,
    Prompt,
    TextTask,
    completion_length,
    exact_match,
    make_task,
    reference_completion,
)
from .tokenizer import BOS, EOS, PAD, TOKENIZER, VOCAB_SIZE, CharTokenizer
from .sft import sft  # noqa: E402  (the function; the module stays jaxgrpo.text.sft)

__all__ = ["BOS", "EOS", "PAD", "TASKS", "TOKENIZER", "VOCAB_SIZE", "CharTokenizer",
           "ModelConfig", "Prompt", "TextTask", "Transformer", "completion_length",
           "evaluate_text", "exact_match", "from_reasoning_gym", "heldout_prompts", "make_task", "pass_at_k",
           "reference_completion", "sft"]
