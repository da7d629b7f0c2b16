"""jaxgrpo.compiled: the one LRU compile cache (CompileCache, cached) and its keys (static_key,
options_key). Nothing is compiled: the cached values are plain Python objects."""
import pytest

import jaxgrpo
from jaxgrpo import compiled
from jaxgrpo.config import GRPOConfig

TEXT = dict(env="text:addition", num_layers=1, width=32, num_heads=2, max_len=16)


def _builder(built, v):
    return lambda: built.append(v) or v


def test_cache_builds_once_and_evicts_the_least_recently_used():
    cache = compiled.CompileCache(max_entries=2)
    built = []

    def build(v):
        return lambda: built.append(v) or v

    assert cache.get("a", build(1))[0] == 1 and cache.get("b", build(2))[0] == 2
    value, seconds = cache.get("a", build(99))          # cached: not rebuilt, no seconds
    assert (value, seconds) == (1, 0.0) and built == [1, 2]
    cache.get("c", build(3))                             # evicts b, the least recently used
    assert "a" in cache and "c" in cache and "b" not in cache and len(cache) == 2
    assert cache.get("b", build(4))[0] == 4 and built == [1, 2, 3, 4]


def test_lru_order_over_many_keys_and_clear():
    cache = compiled.CompileCache(max_entries=3)
    built = []
    for k in "abc":
        cache.get(k, _builder(built, k))
    cache.get("a", _builder(built, "A"))                 # a used last: b is now the oldest
    cache.get("b", _builder(built, "B"))                 # then b: c is the oldest
    cache.get("d", _builder(built, "d"))                 # evicts c
    assert [k for k in "abcd" if k in cache] == ["a", "b", "d"]
    cache.get("e", _builder(built, "e"))                 # evicts a (b, d, e stay)
    assert [k for k in "abcde" if k in cache] == ["b", "d", "e"]
    assert built == ["a", "b", "c", "d", "e"]            # hits never rebuilt
    cache.clear()
    assert len(cache) == 0 and "b" not in cache
    assert cache.get("b", _builder(built, "B2"))[0] == "B2"   # rebuilt after clear


def test_seconds_are_the_build_time_on_a_miss_and_zero_on_a_hit(monkeypatch):
    clock = iter([10.0, 12.5])                           # perf_counter before and after build
    monkeypatch.setattr(compiled.time, "perf_counter", lambda: next(clock))
    cache = compiled.CompileCache()
    assert cache.get(("k", 1), lambda: "v") == ("v", 2.5)
    assert cache.get(("k", 1), lambda: pytest.fail("rebuilt")) == ("v", 0.0)
    assert cache.max_entries == compiled.MAX_ENTRIES == 32


def test_a_failed_build_caches_nothing():
    cache = compiled.CompileCache()

    def broken():
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        cache.get("k", broken)
    assert "k" not in cache and len(cache) == 0
    assert cache.get("k", lambda: 1)[0] == 1 and cache.get("k", lambda: 2) == (1, 0.0)


def test_cached_uses_the_one_module_cache(monkeypatch):
    monkeypatch.setattr(compiled, "CACHE", compiled.CompileCache(max_entries=1))
    built = []
    assert compiled.cached(("runs.run", 1), _builder(built, 1))[0] == 1
    assert compiled.cached(("runs.run", 1), _builder(built, 2)) == (1, 0.0)
    assert ("runs.run", 1) in compiled.CACHE
    compiled.cached(("sweeps.runner", 1), _builder(built, 3))     # max 1: evicts the first
    assert ("runs.run", 1) not in compiled.CACHE and built == [1, 3]


def test_static_key_ignores_hparams_and_names_static_fields():
    base = GRPOConfig()
    assert compiled.static_key(base) == compiled.static_key(base.replace(lr=0.1, beta=0.5))
    assert compiled.static_key(base) != compiled.static_key(base.replace(group_size=16))
    assert compiled.static_key(base) != compiled.static_key(jaxgrpo.PPOConfig())
    assert compiled.options_key(None) == compiled.options_key({})


def test_static_key_is_hashable_and_ignores_mapping_order():
    a = GRPOConfig(**TEXT, env_kwargs={"digits": 2, "reverse_answer": True})
    b = GRPOConfig(**TEXT, env_kwargs={"reverse_answer": True, "digits": 2})
    key = compiled.static_key(a)
    assert key == compiled.static_key(b) and hash(key) == hash(compiled.static_key(b))
    assert key[0] == "GRPOConfig"
    names = [name for name, _ in key[1:]]
    assert "group_size" in names and "env_kwargs" in names
    assert not set(names) & set(a.hparams())             # no dynamic field
    assert key != compiled.static_key(a.replace(env_kwargs={"digits": 3}))


def test_options_key():
    key = compiled.options_key({"b": 1, "a": "x"})
    assert key == compiled.options_key({"a": "x", "b": 1}) == '{"a": "x", "b": 1}'
    assert key != compiled.options_key({"a": "x", "b": 2})
    assert compiled.options_key(None) == "{}"
    assert isinstance(compiled.options_key({"f": object()}), str)   # unserializable: repr
