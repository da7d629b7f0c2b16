"""Verifiable text tasks for language-model GRPO: a character tokenizer, prompt samplers and
reward functions in pure JAX, and pass@k. See ``jaxgrpo.text.tasks`` for the task interface."""
from .evaluation import pass_at_k
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

__all__ = ["BOS", "EOS", "PAD", "TASKS", "TOKENIZER", "VOCAB_SIZE", "CharTokenizer", "Prompt",
           "TextTask", "completion_length", "exact_match", "make_task", "pass_at_k",
           "reference_completion"]
