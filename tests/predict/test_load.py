"""What `f2tune predict` loads: a model or an adapter, from a folder or the Hub."""

from __future__ import annotations

import huggingface_hub

from f2tune.predict.load import _is_adapter


def test_an_adapter_in_the_hub_cache_is_known_offline(tmp_path, monkeypatch):
    """Asking the Hub raised offline, and the adapter was then loaded as a model ("Can't find
    'adapter_config.json'"), though peft loads it from the cache."""
    snapshot = tmp_path / "models--me--good" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "adapter_config.json").write_text("{}")
    (tmp_path / "models--me--good" / "refs").mkdir()
    (tmp_path / "models--me--good" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _is_adapter("me/good")
    assert not _is_adapter("me/not-cached")
