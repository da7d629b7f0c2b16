"""Plain NumPy (float64 loop) references shared by several test modules: group normalization,
the reverse discounted cumsum, discounted episode returns and GAE (jaxgrpo.advantages, used by
test_advantages.py, test_grpo.py and test_ppo.py). Not a test module: ``from references import
...`` (pytest puts tests/ on sys.path)."""
import numpy as np


def ref_group_normalize(values, group_ids, num_groups, mask=None, scale="group",
                        baseline="mean", eps=1e-4):
    """Loop over groups, float64. Values are first rounded to float32 (what the JAX code sees)."""
    v = np.asarray(values, np.float32).astype(np.float64)
    gid = np.asarray(group_ids)
    mask = np.ones(v.shape, bool) if mask is None else np.asarray(mask, bool)
    out = np.zeros_like(v)
    all_valid = v[mask]
    batch_std = np.std(all_valid, ddof=1) if all_valid.size > 1 else 0.0
    for g in range(num_groups):
        idx = np.flatnonzero((gid == g) & mask)
        n = idx.size
        if n <= 1:
            continue                      # empty or singleton: exactly 0
        x = v[idx]
        if np.all(x == x[0]):
            continue                      # zero spread: exactly 0
        if baseline == "mean":
            c = x - x.mean()
        else:
            c = np.array([x[i] - np.delete(x, i).mean() for i in range(n)])
        if scale == "group":
            c = c / (np.std(x, ddof=1) + eps)
        elif scale == "batch":
            c = c / (batch_std + eps)
        out[idx] = c
    return out


def ref_reverse_discounted_cumsum(x, gamma, mask):
    """[T, N]: ``out[t] = x[t] + gamma * out[t + 1]`` within each run of valid steps (mask), 0
    where masked; the sum restarts after a masked step."""
    x = np.asarray(x, np.float64)
    T, N = x.shape
    out = np.zeros_like(x)
    for n in range(N):
        acc = 0.0
        for t in reversed(range(T)):
            if mask[t, n]:
                acc = x[t, n] + gamma * acc
                out[t, n] = acc
            else:
                acc = 0.0
    return out


def ref_episode_returns(rewards, mask, gamma):
    """[N]: the discounted return ``sum_t gamma**t r[t]`` of each episode's valid steps."""
    T, N = rewards.shape
    out = np.zeros(N)
    for n in range(N):
        for t in range(T):
            if mask[t, n]:
                out[n] += gamma ** t * rewards[t, n]
    return out


def ref_gae(rewards, values, next_values, terminated, done, gamma, lam):
    """GAE over [T, N]: no bootstrap past a terminated step, the sum cut after a done one
    (terminated or truncated). Returns ``(advantages, advantages + values)``."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for n in range(N):
        acc = 0.0
        for t in reversed(range(T)):
            boot = 0.0 if terminated[t, n] else gamma * next_values[t, n]
            delta = rewards[t, n] + boot - values[t, n]
            if done[t, n]:
                acc = 0.0
            acc = delta + gamma * lam * acc
            adv[t, n] = acc
    return adv, adv + values
