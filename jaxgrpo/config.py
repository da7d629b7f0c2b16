"""Configurations: frozen dataclasses, validated when built.

Static fields (anything that changes an array shape or the traced program) live on the
config. Numbers in the math live in ``config.hparams()``, a dict of float32 scalars that
``train(key, hparams)`` takes as a traced argument, so ``jax.vmap`` can sweep them with one
compilation.

Building a config reads no disk (``init_from`` is checked as a path string here, and against
the run folder it names by ``jaxgrpo.runs.init_params``). Importing this module imports no JAX
(``jaxgrpo train --help`` quotes its defaults), so the modules that validate an env, a reward
transform or a model are imported inside the methods that use them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .checks import check_choice, check_count, check_number, fail, field_hint

ACTIVATIONS = ("tanh", "relu", "gelu", "silu", "elu")
DTYPES = ("float32", "bfloat16")
# GRPOConfig.advantage and .multi_objective_aggregation (jaxgrpo.advantages implements them)
ADVANTAGES = ("grpo", "reinforce_pp", "reinforce_pp_baseline", "grpo_passk")
AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")
# GRPOConfig.loss_type (= jaxgrpo.losses.LOSS_TYPES; here without importing JAX)
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo", "vespo", "gmpo")
# the loss types whose policy term needs each whole sequence's current log-probs (a sequence
# ratio or weight): their minibatches hold whole sequences (episodes on environments)
SEQUENCE_LOSS_TYPES = ("vespo", "gmpo")


def _check_int(cfg, name, low=1):
    """The field ``name`` of ``cfg`` checked as an int >= ``low`` (stored as a Python int)."""
    object.__setattr__(cfg, name, check_count(name, getattr(cfg, name), low))


def _check_float(cfg, name, **bounds):
    check_number(name, getattr(cfg, name), **bounds)


def _check_choice(cfg, name, choices):
    check_choice(name, getattr(cfg, name), choices)


def _check_env_kind(cfg):
    """The config's algorithm runs on its kind of env: GRPO on both, PPO on gymnax
    environments, SFT on text tasks (``jaxgrpo.train.ALGORITHMS`` implements these)."""
    if cfg.algo == "ppo" and is_text(cfg.env):
        fail("env", f"PPO needs a gymnax environment, got the text task {cfg.env!r} (text "
              "tasks train with GRPO, algo 'grpo', or SFT, jaxgrpo sft)")
    if cfg.algo == "sft" and not is_text(cfg.env):
        fail("env", f"SFT needs a text task ('text:NAME'), got {cfg.env!r}")


@dataclass(frozen=True)
class _BaseConfig:
    """Fields shared by GRPO and PPO (PureJaxRL's names)."""

    env: str = "CartPole-v1"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    env_params: Mapping[str, Any] = field(default_factory=dict)
    total_timesteps: int = 500_000
    lr: float = 2.5e-4
    gamma: float = 0.99
    clip_eps: float = 0.2
    update_epochs: int = 4
    num_minibatches: int = 4
    max_grad_norm: float = 0.5
    ent_coef: float = 0.01
    hidden_sizes: tuple = (64, 64)
    activation: str = "tanh"
    reward_transform: Any = None

    # names of the dynamic (traced) hyperparameters, in hparams() order
    _HPARAMS: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self):
        from .envs import normalize_env_kwargs, validate_env

        if not isinstance(self.env, str):
            fail("env", f"must be a gymnax id string, got {self.env!r}")
        _check_env_kind(self)
        for name in ("env_kwargs", "env_params"):
            if not isinstance(getattr(self, name), Mapping):
                fail(name, f"must be a dict, got {type(getattr(self, name)).__name__}")
        object.__setattr__(self, "env_kwargs", normalize_env_kwargs(self.env, self.env_kwargs))
        object.__setattr__(self, "hidden_sizes", tuple(self.hidden_sizes))
        _check_int(self, "total_timesteps")
        if self.total_timesteps > 2**31 - 1:      # counted in int32 / float32 in the program
            fail("total_timesteps", f"must be < 2**31 (the step counters are 32-bit), got "
                  f"{self.total_timesteps:,}")
        _check_int(self, "update_epochs")
        _check_int(self, "num_minibatches")
        _check_float(self, "lr", low=0.0, low_open=True)
        _check_float(self, "gamma", low=0.0, high=1.0)
        _check_float(self, "clip_eps", low=0.0, low_open=True)
        _check_float(self, "max_grad_norm", low=0.0, low_open=True)
        _check_float(self, "ent_coef", low=0.0)
        if not self.hidden_sizes or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden_sizes
        ):
            fail("hidden_sizes", f"must be a non-empty tuple of positive ints, got {self.hidden_sizes!r}")
        _check_choice(self, "activation", ACTIVATIONS)
        from .rewards import check
        object.__setattr__(self, "reward_transform", check(self.reward_transform))
        validate_env(self.env, dict(self.env_kwargs), dict(self.env_params))

    def replace(self, **changes):
        """A copy with ``changes`` applied (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self) if f.init}
        if unknown:
            name = sorted(unknown)[0]
            raise ValueError(f"{name}: unknown field of {type(self).__name__} "
                             f"({field_hint(name, type(self))})")
        return dataclasses.replace(self, **changes)

    def hparams(self) -> dict:
        """Defaults of the dynamic hyperparameters: ``{name: float32 scalar}``."""
        import jax.numpy as jnp   # here, not at the top: `jaxgrpo train --help` reads these
        #                           classes' defaults and must not import JAX
        return {k: jnp.asarray(getattr(self, k) if getattr(self, k) is not None else jnp.nan,
                               jnp.float32) for k in self._HPARAMS}

    @property
    def algo(self) -> str:
        raise NotImplementedError


def _check_dataset_answers(cfg, why):
    """A dataset task (``text:dataset``) whose rows have no answer column fails (``why``: what
    needs the answers)."""
    if cfg.env == "text:dataset" and cfg.task.data.answer_column is None:
        fail("env_kwargs", f"the dataset's rows have no answer column "
              f"({cfg.env_kwargs.get('answer_column', 'answer')!r}); {why}")


def is_text(env: str) -> bool:
    """True for a text task id, ``"text:NAME"`` (see ``jaxgrpo.text``)."""
    return isinstance(env, str) and env.startswith("text:")


@dataclass(frozen=True)
class _TextFields:
    """The transformer policy and its decoding, for text tasks (``env="text:NAME"``); the
    model is ``jaxgrpo.text.ModelConfig`` of these fields (``model_config``)."""

    num_layers: int = 2
    width: int = 128
    num_heads: int = 4
    max_len: int = 64                      # context: prompt + completion tokens
    positions: str = "learned"             # or "rotary"
    max_new_tokens: int | None = None      # None: the task's (its longest answer + EOS)
    dtype: str = "float32"                 # compute dtype of the dense layers: or "bfloat16"
    lora_rank: int = 0                     # LoRA adapters of this rank (0: full fine-tuning)
    lora_alpha: float = 32.0               # adapter scale lora_alpha / lora_rank (peft's)
    lora_targets: tuple = ("q", "k", "v", "o", "gate", "up", "down")   # projections adapted

    def _check_text_fields(self):
        text = is_text(self.env)
        if isinstance(self.lora_targets, (list, tuple)):     # YAML gives a list
            object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        for f in dataclasses.fields(_TextFields):
            if not text and getattr(self, f.name) != f.default:
                fail(f.name, f"only for text tasks (env 'text:NAME'), but env is {self.env!r}")
        if not text:
            return
        if self.max_new_tokens is not None:
            _check_int(self, "max_new_tokens")
        _check_choice(self, "dtype", DTYPES)
        if self.pretrained:
            shape = {f.name: f.default for f in dataclasses.fields(_TextFields)
                     if f.name in ("num_layers", "width", "num_heads", "positions")}
            for name, default in shape.items():
                if getattr(self, name) != default:
                    fail(name, f"the model's shape comes from the checkpoint at init_from "
                          f"({self.init_from}); leave {name} unset")
        if self.pretrained:     # the architecture and every tensor's shape, headers only
            from .text.pretrained import check_weights, read_model_config
            try:
                read_model_config(self.init_from)
                check_weights(self.init_from)
            except ValueError as e:
                fail("init_from", str(e))
        model = self.model_config()    # text.ModelConfig checks the model's shape (one place)
        task = self.task
        need = task.prompt_len + task.max_new_tokens
        if need > model.max_len:
            context = ("max_len" if not self.pretrained or self.max_len != _TextFields.max_len
                       else f"max_position_embeddings of {self.init_from}/config.json")
            fail("max_len", f"{self.env}'s prompts ({task.prompt_len} tokens) plus max_new_tokens "
                  f"({task.max_new_tokens}) need {need} positions; the model's context "
                  f"({context}) is {model.max_len}")

    @property
    def pretrained(self) -> bool:
        """Whether ``init_from`` is a Hugging Face checkpoint folder (config.json and
        safetensors weights) rather than a jaxgrpo run folder: then the model's shape and the
        tokenizer are the checkpoint's (``jaxgrpo.text.pretrained``)."""
        path = getattr(self, "init_from", None)
        if path is None or not isinstance(path, str):
            return False
        from .text.pretrained import is_pretrained_dir
        return is_pretrained_dir(path)

    @property
    def task(self):
        """The ``jaxgrpo.text.TextTask`` of a text env (``max_new_tokens`` applied)."""
        from .envs import make_text_task
        return make_text_task(self)

    def model_config(self):
        """The ``jaxgrpo.text.ModelConfig`` of the policy."""
        import jax.numpy as jnp
        from .text.model import ModelConfig
        extra = {"lora_rank": self.lora_rank, "lora_alpha": float(self.lora_alpha),
                 "lora_targets": self.lora_targets, "dtype": getattr(jnp, self.dtype)}
        if self.pretrained:
            from .text.pretrained import read_model_config
            model = read_model_config(self.init_from)
            if self.max_len != _TextFields.max_len:     # a shorter context: smaller caches
                extra["max_len"] = min(self.max_len, model.max_len)
            return dataclasses.replace(model, **extra)
        return ModelConfig(vocab_size=self.task.tokenizer.vocab_size, num_layers=self.num_layers,
                           width=self.width, num_heads=self.num_heads, max_len=self.max_len,
                           positions=self.positions, **extra)


# GRPOConfig fields whose default depends on the kind of env: None in the class means "the
# default of this kind", resolved when the config is built (and again by ``replace`` when
# the env changes kind, unless the field was set). Public: `jaxgrpo train --help` quotes them.
KIND_DEFAULTS = {
    "env": {"lr": 3e-3, "num_groups": 4, "max_grad_norm": 0.5, "total_timesteps": 500_000,
            "update_epochs": 4},
    "text": {"lr": 1e-4, "num_groups": 64, "max_grad_norm": 1.0, "total_timesteps": 1_400_000,
             "update_epochs": 1},
}


@dataclass(frozen=True)
class GRPOConfig(_TextFields, _BaseConfig):
    """Group Relative Policy Optimization on gymnax environments.

    One iteration: ``num_groups`` start states, ``group_size`` episodes from each (same reset key,
    so bitwise-identical starts), advantages normalized within each group, then
    ``update_epochs`` x ``num_minibatches`` clipped-surrogate steps with a KL penalty to the
    reference policy. Iterations run while fewer than ``total_timesteps`` valid env steps have
    been used (the last one may end past the budget, by less than one iteration's steps), for
    at most ``num_iterations`` iterations (default: as many as the budget could take, see
    ``iterations``, so the budget is what ends the run); metrics of the iterations not run are
    NaN.

    Group modes (``group_mode``):
    - ``"episode"``: a group is ``group_size`` episodes from the same start state.
    - ``"state"``: ``num_groups`` main trajectories; at every ``branch_every``-th state the env
      state is copied ``group_size`` times, each copy takes its own sampled action and runs
      ``branch_horizon`` steps (or to its episode end); a group is the branches of one state,
      scored by their discounted return, and the loss trains each branch's first action.
    - ``"batch"``: a group is ``group_size`` consecutive, unrelated episodes (own start states).
    ``share_env_noise``: members of a group also share the env's step randomness.

    Collectors (episode and batch groups, outcome supervision): by default (``on_policy``
    False) ``num_envs`` lanes step ``num_steps`` times per iteration as PPO's envs do, a lane
    whose episode ends starting the next group member at once; a group is scored when all its
    members have ended, and each iteration trains the ``num_envs * num_steps`` oldest scored
    steps (``jaxgrpo.stream``). Every simulated step is trained, iterations have a fixed cost,
    and vmapped seeds do not wait for each other; an episode's early steps come from a policy
    a few updates older than the one that trains them (metrics ``staleness/mean`` and
    ``staleness/max``; the clipped ratio uses the behaviour log-probs). ``on_policy=True``:
    each iteration runs ``num_groups * group_size`` new episodes with the current policy on as
    many lanes and waits for the longest (the finished lanes idle); state groups, process
    supervision and text tasks always collect this way.
    ``reward_transform``: ``f(rewards, mask) -> rewards`` or a name (see ``jaxgrpo.rewards``).

    Text tasks (``env="text:NAME"``, ``env_kwargs`` the task's options; see ``jaxgrpo.text``):
    an episode is a completion, a step a completion token, a group the ``group_size``
    completions of one of ``num_groups`` prompts; the policy is a causal transformer (the
    ``_TextFields``: ``num_layers``, ``width``, ``num_heads``, ``max_len``, ``positions``),
    ``max_new_tokens`` bounds a completion, ``total_timesteps`` counts completion tokens, and
    the loss is ``jaxgrpo.losses.policy_loss`` with the token-level options below. Fields left
    None take the text defaults (lr 1e-4, 64 prompts, max_grad_norm 1.0, 1.4M tokens).
    ``init_from``: the run folder of a ``jaxgrpo sft`` (or GRPO) run; its params (seed 0, latest
    checkpoint) are the initial policy and the reference policy.
    """

    total_timesteps: int | None = None    # None: 500_000 env steps; text: 1_400_000 tokens
    lr: float | None = None               # None: 3e-3; text: 1e-4 (3e-4 destabilized SFT models)
    gamma: float = 0.99
    update_epochs: int | None = None      # None: 4; text: 1 (TRL's num_iterations)
    num_minibatches: int = 4
    max_grad_norm: float | None = None    # None: 0.5; text: 1.0
    ent_coef: float = 0.0
    group_size: int = 8
    num_groups: int | None = None         # None: 4; text: 64 prompts
    group_mode: str = "episode"
    branch_every: int = 1
    branch_horizon: int = 1
    share_env_noise: bool = False
    num_envs: int | None = None           # lanes; None: num_groups * group_size
    num_steps: int = 128                  # steps per lane per iteration (on_policy False)
    on_policy: bool | None = None         # None: False where the stream collector applies
    beta: float = 0.0
    kl_estimator: str = "k3"
    clip_eps_high: float | None = None    # None: = clip_eps (symmetric)
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    baseline: str = "mean"
    supervision: str = "outcome"
    ref_sync_every: int = 0
    ref_mixup_alpha: float = 1.0
    adv_eps: float = 1e-4
    num_iterations: int | None = None
    chunk_size: int = 128
    warmup_steps: int = 0                 # linear lr warmup over this many optimizer updates
    # token-level options (TRL's names and meanings; see jaxgrpo.losses.policy_loss)
    importance_sampling_level: str = "token"   # text only: or "sequence" (GSPO)
    delta: float | None = None                 # text: two-sided clipping, ratio capped at delta
    mask_truncated_completions: bool = False   # text: completions without EOS leave the loss
    dynamic_sampling: bool = False             # text: groups with equal rewards leave the loss
    kl_bias_correction: bool = False           # text: per-token KL times the ratio (TRL)
    temperature: float = 1.0                   # text: sampling temperature (dynamic)
    top_k: int = 0                             # text: sample from the k likeliest tokens (0: all)
    top_p: float = 1.0                         # text: nucleus sampling (1.0: off)
    init_from: str | None = None               # text: a run folder (SFT or GRPO) to start from
    reward_funcs: tuple = ()                   # text: Python reward functions (or "module:fn")
    reward_weights: tuple | None = None        # text: their weights (None: all 1)
    # advantage estimators and multi-reward aggregation (jaxgrpo.advantages)
    advantage: str = "grpo"        # or "reinforce_pp", "reinforce_pp_baseline", "grpo_passk"
    multi_objective_aggregation: str = "sum_then_normalize"   # or "normalize_then_sum" (GDPO)
    kl_reward_coef: float = 0.0    # reinforce_pp: KL penalty folded into the reward (dynamic)

    # the other loss types' parameters (TRL's names, meanings and defaults; dynamic; see
    # jaxgrpo.losses.policy_loss)
    sapo_temperature_pos: float = 1.0          # sapo: gate temperature where A > 0
    sapo_temperature_neg: float = 1.05         # sapo: where A <= 0
    vespo_k_pos: float = 2.0                   # vespo: gamma weight power where A >= 0
    vespo_lambda_pos: float = 3.0              # vespo: its decay where A >= 0
    vespo_k_neg: float = 3.0                   # vespo: power where A < 0
    vespo_lambda_neg: float = 2.0              # vespo: decay where A < 0
    off_policy_mask_threshold: float | None = None   # drop A < 0 sequences whose mean
    #                                            KL from the sampler exceeds it (None: off)
    top_entropy_quantile: float = 1.0          # train the tokens (steps) in this top share by
    #                                            entropy (1.0: all)

    _HPARAMS: tuple = field(
        default=("lr", "gamma", "clip_eps", "clip_eps_high", "beta", "ent_coef",
                 "max_grad_norm", "ref_mixup_alpha", "sapo_temperature_pos",
                 "sapo_temperature_neg", "vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg",
                 "vespo_lambda_neg", "off_policy_mask_threshold", "top_entropy_quantile")
        + ("kl_reward_coef",),     # advantage estimators
        init=False, repr=False, compare=False,
    )
    _defaulted: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)
    # fields left None, derived from others (on_policy, num_envs): derived again by replace
    _derived: frozenset = field(default=frozenset(), init=False, repr=False, compare=False)

    def __post_init__(self):
        kind = "text" if is_text(self.env) else "env"
        defaulted = frozenset(k for k in KIND_DEFAULTS[kind] if getattr(self, k) is None)
        for k in defaulted:
            object.__setattr__(self, k, KIND_DEFAULTS[kind][k])
        object.__setattr__(self, "_defaulted", defaulted)
        super().__post_init__()
        self._check_text_fields()
        self._check_token_options()
        self._check_reward_funcs()
        _check_int(self, "group_size", low=2)   # a group of one has no advantage
        _check_int(self, "num_groups")
        _check_choice(self, "group_mode", ("episode", "state", "batch"))
        _check_int(self, "branch_every")
        _check_int(self, "branch_horizon")
        if not isinstance(self.share_env_noise, bool):
            fail("share_env_noise", f"must be a bool, got {self.share_env_noise!r}")
        # before the collector, which reads them
        _check_choice(self, "advantage", ADVANTAGES)
        _check_choice(self, "multi_objective_aggregation", AGGREGATIONS)
        self._check_collector()
        _check_float(self, "beta", low=0.0)
        _check_choice(self, "kl_estimator", ("k1", "k2", "k3"))
        if self.clip_eps_high is not None:    # None: the upper clip follows clip_eps
            _check_float(self, "clip_eps_high", low=0.0, low_open=True)
        _check_choice(self, "loss_type", LOSS_TYPES)
        self._check_loss_options()
        _check_choice(self, "scale_rewards", ("group", "batch", "none"))
        _check_choice(self, "baseline", ("mean", "loo"))
        _check_choice(self, "supervision", ("outcome", "process"))
        _check_int(self, "ref_sync_every", low=0)
        _check_float(self, "ref_mixup_alpha", low=0.0, high=1.0)
        _check_float(self, "adv_eps", low=0.0)
        _check_int(self, "chunk_size")
        _check_int(self, "warmup_steps", low=0)
        if self.num_iterations is not None:
            _check_int(self, "num_iterations")
        self._check_advantage()

    def _check_advantage(self):
        """``advantage``, ``multi_objective_aggregation`` and ``kl_reward_coef`` checked,
        and against the options they leave out (called after the collector is resolved)."""
        _check_float(self, "kl_reward_coef", low=0.0)
        plain = self.advantage == "grpo"
        gdpo = self.multi_objective_aggregation == "normalize_then_sum"
        if self.kl_reward_coef and self.advantage != "reinforce_pp":
            fail("kl_reward_coef", f"the KL penalty in the reward is REINFORCE++'s (advantage "
                  f"'reinforce_pp'), got advantage {self.advantage!r}; beta is the KL loss")
        if plain and not gdpo:
            return
        what = f"advantage {self.advantage!r}" if not plain else \
            "multi_objective_aggregation 'normalize_then_sum'"
        if self.supervision != "outcome":
            fail("supervision", f"{what} scores whole episodes: only 'outcome', got "
                  f"{self.supervision!r}")
        if self.advantage in ("reinforce_pp", "reinforce_pp_baseline") or gdpo:
            if self.baseline != "mean":
                fail("baseline", f"{what} has its own baseline; leave baseline 'mean', got "
                      f"{self.baseline!r}")
            if self.scale_rewards != "group":
                fail("scale_rewards", f"{what} has its own normalization; leave scale_rewards "
                      f"'group', got {self.scale_rewards!r}")
        if self.advantage == "grpo_passk":
            if self.baseline != "mean":
                fail("baseline", f"grpo_passk's advantage is r_max - r_second; leave baseline "
                      f"'mean', got {self.baseline!r}")
            if self.scale_rewards not in ("group", "none"):
                fail("scale_rewards", f"grpo_passk divides by the group's std ('group') or "
                      f"not at all ('none'), got {self.scale_rewards!r}")
        if self.advantage == "reinforce_pp" and self.group_mode == "state":
            fail("advantage", "'reinforce_pp' needs every step's action and log-prob; state "
                  "branches train only their first action: use group_mode 'episode' or 'batch'")

    def _check_loss_options(self):
        """The sapo / vespo parameters, the off-policy mask and the entropy selection
        (``policy_loss``'s); the loss types and options that need whole sequences in a
        minibatch (``by_episode``) refuse state branches on environments."""
        for name in ("sapo_temperature_pos", "sapo_temperature_neg"):
            _check_float(self, name, low=0.0, low_open=True)
        for name in ("vespo_k_pos", "vespo_lambda_pos", "vespo_k_neg", "vespo_lambda_neg"):
            _check_float(self, name, low=0.0)
        if self.off_policy_mask_threshold is not None:
            _check_float(self, "off_policy_mask_threshold", low=0.0)
        _check_float(self, "top_entropy_quantile", low=0.0, high=1.0)
        if self.group_mode == "state" and self.by_episode:
            what = (f"loss_type {self.loss_type!r}" if self.loss_type in SEQUENCE_LOSS_TYPES
                    else "off_policy_mask_threshold")
            fail("group_mode", f"{what} weighs whole episodes by their ratio; state branches "
                  "train only their first action: use group_mode 'episode' or 'batch'")

    @property
    def by_episode(self) -> bool:
        """Whether an environment run's learn samples are whole episodes, not steps: the loss
        types that weigh a sequence by its whole ratio (``SEQUENCE_LOSS_TYPES``) and the
        off-policy mask need every step of an episode in one minibatch. False for text tasks,
        whose samples are always whole completions."""
        return not is_text(self.env) and (self.loss_type in SEQUENCE_LOSS_TYPES
                                          or self.off_policy_mask_threshold is not None)

    def _check_collector(self):
        """``on_policy`` resolved (None: the stream collector where it applies), ``num_envs``
        (None: num_groups * group_size) and ``num_steps`` checked."""
        episodes = self.num_groups * self.group_size
        object.__setattr__(self, "_derived", frozenset(
            k for k in ("on_policy", "num_envs") if getattr(self, k) is None))
        needs = ("text tasks" if is_text(self.env) else
                 "group_mode 'state'" if self.group_mode == "state" else
                 "supervision 'process'" if self.supervision == "process" else
                 f"advantage {self.advantage!r}" if self.advantage != "grpo" else
                 "multi_objective_aggregation 'normalize_then_sum'"
                 if self.multi_objective_aggregation != "sum_then_normalize" else
                 f"loss_type {self.loss_type!r}" if self.loss_type in SEQUENCE_LOSS_TYPES else
                 "off_policy_mask_threshold" if self.off_policy_mask_threshold is not None
                 else None)
        if self.on_policy is None:
            object.__setattr__(self, "on_policy", needs is not None)
        if not isinstance(self.on_policy, bool):
            fail("on_policy", f"must be a bool, got {self.on_policy!r}")
        if not self.on_policy and needs is not None:
            fail("on_policy", f"{needs} collect on-policy (the stream collector scores whole "
                  "episodes of episode or batch groups); leave on_policy unset or true")
        _check_int(self, "num_steps")
        if self.num_envs is None:
            object.__setattr__(self, "num_envs", episodes)
        _check_int(self, "num_envs")
        if not self.on_policy and (self.num_envs * self.num_steps) % self.num_minibatches:
            fail("num_minibatches", f"must divide num_envs * num_steps = "
                  f"{self.num_envs * self.num_steps} (the stream collector's batch)")
        if self.on_policy and self.num_envs != episodes:
            fail("num_envs", f"the on-policy collector steps num_groups * group_size = "
                  f"{episodes} lanes, got {self.num_envs}; num_envs sets the lanes of the "
                  "stream collector (on_policy false)")

    def _check_reward_funcs(self):
        """``reward_funcs`` resolved to a tuple of callables (``"module:function"`` strings
        imported) and each called once on a dummy batch of the task's (a function that raises
        or returns the wrong length or type fails here, named, before anything compiles);
        ``reward_weights`` a tuple of one float per function, or None. A dataset task without
        reward functions needs an answer column (its in-graph exact-match verifier)."""
        from .text import rewardfns
        try:
            funcs = rewardfns.resolve_all(self.reward_funcs)
            object.__setattr__(self, "reward_funcs", funcs)
            object.__setattr__(self, "reward_weights",
                               rewardfns.check_weights(self.reward_weights, len(funcs)))
        except ValueError as e:
            field_name, _, msg = str(e).partition(": ")
            fail(field_name, msg)
        if not is_text(self.env):
            for name in ("reward_funcs", "reward_weights"):
                if getattr(self, name):
                    fail(name, f"only for text tasks (env 'text:NAME'), but env is "
                          f"{self.env!r}; gymnax environments give their own rewards")
            return
        if not funcs:
            _check_dataset_answers(self, "without reward_funcs its reward is the in-graph "
                                   "exact match of the answer")
            return
        try:
            rewardfns.check_reward_funcs(funcs, self.task)
        except ValueError as e:
            fail("reward_funcs", str(e).partition(": ")[2])

    def _check_token_options(self):
        text = is_text(self.env)
        _check_choice(self, "importance_sampling_level", ("token", "sequence"))
        if self.delta is not None:
            _check_float(self, "delta", low=1.0, low_open=True)
        for name in ("mask_truncated_completions", "dynamic_sampling", "kl_bias_correction"):
            if not isinstance(getattr(self, name), bool):
                fail(name, f"must be a bool, got {getattr(self, name)!r}")
        _check_float(self, "temperature", low=0.0, low_open=True)
        _check_int(self, "top_k", low=0)
        _check_float(self, "top_p", low=0.0, high=1.0, low_open=True)
        if self.init_from is not None and not isinstance(self.init_from, str):
            fail("init_from", f"must be a run folder path, got {self.init_from!r}")
        text_only = {"importance_sampling_level": "token", "delta": None,
                     "mask_truncated_completions": False,
                     "dynamic_sampling": False, "kl_bias_correction": False,
                     "temperature": 1.0, "top_k": 0, "top_p": 1.0, "init_from": None}
        for name, default in text_only.items():
            if not text and getattr(self, name) != default:
                fail(name, f"only for text tasks (env 'text:NAME'), but env is {self.env!r}")
        if text:
            mlp = ("a text task's transformer is set by num_layers, width, num_heads, max_len "
                   "and positions")
            env_only = {"hidden_sizes": mlp, "activation": mlp,
                        "num_steps": "text tasks collect whole completions on-policy",
                        "branch_every": "text tasks group completions of one prompt",
                        "branch_horizon": "text tasks group completions of one prompt"}
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for name, why in env_only.items():
                if getattr(self, name) != defaults[name]:
                    fail(name, f"only for gymnax environments, but env is {self.env!r}; {why}")
            if self.group_mode != "episode":
                fail("group_mode", "text tasks group the completions of one prompt: only "
                      f"'episode', got {self.group_mode!r}")
            if self.supervision != "outcome" or self.share_env_noise:
                name = "supervision" if self.supervision != "outcome" else "share_env_noise"
                fail(name, "not available for text tasks (one verifier reward per completion)")
            from .rewards import identity
            if self.reward_transform is not identity:
                fail("reward_transform", "not available for text tasks; write it into the "
                      "task's verify function")

    def replace(self, **changes):
        """A copy with ``changes`` applied (validated again). Fields left at their
        env-kind default (``lr``, ``num_groups``, ``max_grad_norm``, ``total_timesteps``) take
        the new kind's default when ``env`` changes between a gymnax env and a text task;
        ``on_policy`` and ``num_envs``, if they were left unset, are derived again."""
        if "env" in changes and is_text(changes["env"]) != is_text(self.env):
            changes = {**{k: None for k in self._defaulted}, **changes}
        changes = {**{k: None for k in self._derived}, **changes}
        return super().replace(**changes)

    def hparams(self) -> dict:
        """Defaults of the dynamic hyperparameters (``clip_eps_high`` = ``clip_eps`` if None);
        text tasks add ``temperature``."""
        hp = super().hparams()
        if self.clip_eps_high is None:
            hp["clip_eps_high"] = hp["clip_eps"]
        if is_text(self.env):
            import jax.numpy as jnp   # not at the top: see _BaseConfig.hparams
            hp["temperature"] = jnp.asarray(self.temperature, jnp.float32)
        return hp

    @property
    def algo(self) -> str:
        return "grpo"

    @property
    def episodes_per_iteration(self) -> int:
        return self.num_groups * self.group_size

    @property
    def max_episode_steps(self) -> int:
        from .envs import max_episode_steps
        return max_episode_steps(self)

    @property
    def max_steps_per_iteration(self) -> int:
        """Env steps one iteration can take at most (every episode runs to the time limit).

        episode/batch: num_groups * group_size * T. state: per trajectory, a branch point every
        ``branch_every`` steps costs group_size * branch_horizon steps (the first branch's
        first step is the main step), the other steps one each."""
        T = self.max_episode_steps            # text: max_new_tokens
        if not self.on_policy:              # the stream collector: exactly this many
            return self.num_envs * self.num_steps
        if self.group_mode == "state":
            points = -(-T // self.branch_every)
            return self.num_groups * (points * self.group_size * self.branch_horizon + T - points)
        return self.episodes_per_iteration * T

    @property
    def iterations(self) -> int:
        """Length of the training scan (and of every metric): ``num_iterations``, or by default
        enough iterations for the budget: with the stream collector (every iteration simulates
        ``num_envs * num_steps`` steps) exactly those; on-policy as many as the budget could
        take, each episode (each completion of a text task) being at least one step long, so
        the budget ends the run however short its episodes are. The iterations past the
        budget cost next to nothing (``train.within_budget``), and their metrics are NaN."""
        if self.num_iterations is not None:
            return self.num_iterations
        if not self.on_policy:     # every iteration simulates num_envs * num_steps steps
            return max(1, -(-self.total_timesteps // self.max_steps_per_iteration))
        return max(1, -(-self.total_timesteps // self.episodes_per_iteration))

    @property
    def expected_iterations(self) -> int:
        """About the iterations the budget takes (``iterations`` when they are fixed;
        on-policy, if episodes average a twentieth of the time limit, completions half of
        ``max_new_tokens``): what ``jaxgrpo train`` spaces its progress reports by."""
        if self.num_iterations is not None or not self.on_policy:
            return self.iterations
        per_iter = max(1, self.max_steps_per_iteration // (2 if is_text(self.env) else 20))
        return min(self.iterations, max(1, -(-self.total_timesteps // per_iter)))


@dataclass(frozen=True)
class PPOConfig(_BaseConfig):
    """PPO with GAE (PureJaxRL's CartPole defaults), bootstrapping truncated episodes
    from the value of ``info["final_observation"]``."""

    num_envs: int = 4
    num_steps: int = 128
    gae_lambda: float = 0.95
    vf_coef: float = 0.5
    anneal_lr: bool = True

    _HPARAMS: tuple = field(
        default=("lr", "gamma", "gae_lambda", "clip_eps", "ent_coef", "vf_coef", "max_grad_norm"),
        init=False, repr=False, compare=False,
    )

    def __post_init__(self):
        super().__post_init__()
        _check_int(self, "num_envs")
        _check_int(self, "num_steps")
        _check_float(self, "gae_lambda", low=0.0, high=1.0)
        _check_float(self, "vf_coef", low=0.0)
        if not isinstance(self.anneal_lr, bool):
            fail("anneal_lr", f"must be a bool, got {self.anneal_lr!r}")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            fail("num_minibatches", f"must divide num_envs * num_steps = {self.num_envs * self.num_steps}")
        if self.total_timesteps < self.num_envs * self.num_steps:
            fail("total_timesteps", f"must be >= num_envs * num_steps = {self.num_envs * self.num_steps}")

    @property
    def algo(self) -> str:
        return "ppo"

    @property
    def iterations(self) -> int:
        return self.total_timesteps // (self.num_envs * self.num_steps)


@dataclass(frozen=True)
class SFTConfig(_TextFields):
    """Supervised warm start on a text task: next-token cross-entropy on the reference
    completion (answer + EOS) of fresh task prompts, ``batch_size`` prompts per step, for
    ``num_steps`` Adam steps (linear warmup over ``warmup_steps``, then constant ``lr``).
    One iteration of the training scan is one step; its metrics are ``loss`` (mean token
    cross-entropy), ``token_accuracy`` and ``accuracy`` (share of the batch whose every
    reference token is the model's argmax: exactly the completions greedy decoding gets
    right), with ``episode_return`` = ``accuracy`` and ``env_steps`` the prompts seen.
    Run it with ``jaxgrpo sft`` or ``jaxgrpo.sft``; start GRPO from it with
    ``GRPOConfig(init_from=RUN_DIR)``. ``init_from=RUN_DIR`` continues another text run's
    model (latest checkpoint; seed i from its seed i, or every seed from its one seed) with a
    fresh optimizer and fresh prompts (the continued-SFT arm of a GRPO comparison)."""

    env: str = "text:addition"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    num_steps: int = 400
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 40
    max_grad_norm: float = 1.0
    init_from: str | None = None     # a text run folder to continue from (default: fresh init)

    _HPARAMS: tuple = field(default=("lr", "max_grad_norm"), init=False, repr=False,
                            compare=False)

    def __post_init__(self):
        from .envs import normalize_env_kwargs, validate_env
        _check_env_kind(self)
        if not isinstance(self.env_kwargs, Mapping):
            fail("env_kwargs", f"must be a dict, got {type(self.env_kwargs).__name__}")
        object.__setattr__(self, "env_kwargs", normalize_env_kwargs(self.env, self.env_kwargs))
        validate_env(self.env, dict(self.env_kwargs), {})
        _check_int(self, "num_steps")
        _check_int(self, "batch_size")
        _check_int(self, "warmup_steps", low=0)
        _check_float(self, "lr", low=0.0, low_open=True)
        _check_float(self, "max_grad_norm", low=0.0, low_open=True)
        self._check_text_fields()
        if self.init_from is not None and not isinstance(self.init_from, str):
            fail("init_from", f"must be a run folder path, got {self.init_from!r}")
        _check_dataset_answers(self, "SFT trains on the answers")

    replace = _BaseConfig.replace
    hparams = _BaseConfig.hparams

    @property
    def algo(self) -> str:
        return "sft"

    @property
    def iterations(self) -> int:
        return self.num_steps

    @property
    def total_timesteps(self) -> int:
        """Prompts seen in the whole run (the progress bar's budget)."""
        return self.num_steps * self.batch_size


ALGOS = ("grpo", "ppo", "sft")


def config_class(algo: str):
    """``"grpo"`` -> GRPOConfig, ``"ppo"`` -> PPOConfig, ``"sft"`` -> SFTConfig."""
    try:
        return {"grpo": GRPOConfig, "ppo": PPOConfig, "sft": SFTConfig}[algo]
    except KeyError:
        raise ValueError(f"algo: must be 'grpo', 'ppo' or 'sft', got {algo!r}") from None
