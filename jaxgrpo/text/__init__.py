"""Language models on verifiable text tasks: a character tokenizer, the task interface
(``interface``), built-in tasks (``tasks``) and dataset tasks (``datasets``), Python reward
functions (``rewardfns``), a causal transformer (``model``), Hugging Face checkpoints in and
out (``pretrained``, with their tokenizers: ``hf_tokenizer``), GRPO and SFT on them (``grpo``,
``sft``) and pass@k evaluation
(``evaluation``).

Names are imported on first use (PEP 562), as in ``jaxgrpo``: importing one of the low modules
(``jaxgrpo.text.tasks``, which ``jaxgrpo.config`` needs) does not import the algorithms above
them.
"""
from ..lazy import lazy_attributes

_NAMES = {
    "BOS": "tokenizer", "EOS": "tokenizer", "PAD": "tokenizer", "TOKENIZER": "tokenizer",
    "VOCAB_SIZE": "tokenizer", "CharTokenizer": "tokenizer",
    "Prompt": "interface", "TextTask": "interface", "completion_length": "interface",
    "exact_match": "interface", "reference_completion": "interface",
    "TASKS": "tasks", "make_task": "tasks",
    "from_reasoning_gym": "datasets", "from_records": "datasets",
    "reasoning_gym_records": "datasets",
    "exact_match_reward": "rewardfns", "format_reward": "rewardfns",
    "math_verify_reward": "rewardfns", "extract_answer": "rewardfns",
    "ModelConfig": "model", "Transformer": "model", "merge_lora": "model", "without_lora": "model",
    "evaluate_text": "evaluation", "heldout_prompts": "evaluation", "pass_at_k": "evaluation",
    "HFTokenizer": "hf_tokenizer",
    "load_pretrained": "pretrained", "save_pretrained": "pretrained",
    "read_model_config": "pretrained", "is_pretrained_dir": "pretrained",
}

_MODULES = ("datasets", "evaluation", "grpo", "hf_tokenizer", "interface", "model", "pretrained",
            "rewardfns", "sft", "tasks", "tokenizer")

__all__ = sorted(_NAMES)

__getattr__, __dir__ = lazy_attributes(__name__, _NAMES, _MODULES)
