"""``jaxgrpo export`` (a text run's policy as a Hugging Face checkpoint folder) and ``jaxgrpo
sample`` (completions of a prompt by a text run's policy)."""
from __future__ import annotations

from pathlib import Path

from .. import rundir
from ..errors import RunError
from .usage import UsageError, user_errors


def _text_config(path, seed):
    """``(config, seeds)`` of the text run folder ``path`` from its config.yaml alone: a
    missing folder, a sweep folder, a gymnax run or a seed it lacks is refused before any
    checkpoint is read."""
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run folder")
    if rundir.folder_kind(run_dir) == "sweep":
        raise RunError(f"{run_dir}: is a sweep folder, which keeps no policies")
    if not (run_dir / "config.yaml").is_file():
        raise RunError(f"{run_dir}: no config.yaml; not a run folder")
    from ..configio import load_config       # here: it imports JAX
    config, seeds, _ = load_config(run_dir / "config.yaml")
    if not config.env.startswith("text:"):
        raise RunError(f"{run_dir}: is a run on {config.env}; only text runs have a "
                       "language model")
    if not 0 <= seed < seeds:
        raise RunError(f"--seed: {run_dir} has {seeds} seed(s) (0..{seeds - 1}), got {seed}")
    return config, seeds


def _text_run(path, step, seed):
    """The text run folder ``path`` loaded (``runs.Run``), after ``_text_config``'s checks."""
    _text_config(path, seed)
    from .. import runs
    return runs.load_run(Path(path), step=step)


def _seed_params(run, seed):
    import jax
    return jax.tree.map(lambda x: x[seed], run.state.params)


def cmd_export(argv) -> int:
    from .parsers import export_parser
    args = export_parser().parse_args(argv)
    out = Path(args.out)
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
            raise RunError(f"--out: {out} exists and is not an empty folder (--overwrite "
                           "replaces its files)")
        run = _text_run(args.run, args.step, args.seed)
        from ..text.grpo import make_policy
        from ..text.hf_tokenizer import HFTokenizer
        from ..text.pretrained import save_pretrained
        config = run.config
        tok = config.task.tokenizer
        tok = tok if isinstance(tok, HFTokenizer) else None
        model = make_policy(config)
        from ..text.pretrained import model_type_of
        model_type_of(model.cfg)          # a shape no architecture has: refused before writing
        save_pretrained(model, _seed_params(run, args.seed), tok, out)
    except user_errors() as e:
        raise UsageError(str(e)) from None
    note = "" if tok is not None else (" (no tokenizer files: a character-level task's "
                                       "tokenizer has no Hugging Face form)")
    print(f"wrote {out}: seed {args.seed} of {run.path} (checkpoint {run.step}"
          f"{', LoRA merged' if config.lora_rank else ''}){note}; load it with "
          "transformers' AutoModelForCausalLM.from_pretrained or jaxgrpo's init_from")
    return 0


def encode_prompt(tokenizer, text: str, chat: bool):
    """A prompt's tokens (int32 [P]): with ``chat`` (a pretrained tokenizer with a chat
    template) the text as a user message with the assistant's turn opened; a character
    tokenizer's text after BOS, as its tasks' prompts are."""
    if hasattr(tokenizer, "apply_chat_template"):
        if chat:
            return tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                 add_generation_prompt=True)
        return tokenizer.encode(text, add_special_tokens=True)
    return tokenizer.encode(text, bos=True)


def cmd_sample(argv) -> int:
    from .parsers import sample_parser
    args = sample_parser().parse_args(argv)
    try:
        config, _ = _text_config(args.run, args.seed)    # the prompt checked before loading
        tok = config.task.tokenizer
        try:
            prompt = encode_prompt(tok, args.prompt, not args.raw)
        except ValueError as e:
            raise RunError(f"--prompt: {e}") from None
        M = args.max_new_tokens or config.task.max_new_tokens
        from ..text.grpo import make_policy
        model = make_policy(config)
        if len(prompt) + M > model.cfg.max_len:
            raise RunError(f"--prompt: {len(prompt)} tokens plus {M} new ones exceed the "
                           f"model's context ({model.cfg.max_len})")
        run = _text_run(args.run, args.step, args.seed)
        config = run.config
    except user_errors() as e:
        raise UsageError(str(e)) from None
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ..text.grpo import sampling_filters
    n = args.num
    tokens = jnp.tile(jnp.asarray(prompt, jnp.int32)[None], (n, 1))
    temp = config.temperature if args.temperature is None else args.temperature
    gen = jax.jit(lambda p, k: model.generate(
        p, k, tokens, jnp.ones_like(tokens, bool), M, temperature=temp,
        eos_id=config.task.eos_id, greedy=args.greedy,
        **sampling_filters(getattr(config, "top_k", 0), getattr(config, "top_p", 1.0))))
    completion, _, length = gen(_seed_params(run, args.seed), jax.random.key(args.sample_seed))
    for i in range(n):
        c = np.asarray(completion[i])[:int(length[i])]
        print(tok.decode(c))
    return 0
