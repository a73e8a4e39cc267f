"""A cache reads other cache files (read-only) for the keys it lacks: how the ranks of a Ray
run share their stored responses."""

from __future__ import annotations

from pathlib import Path

from pixtill.store.cache import ResponseCache


def test_a_cache_reads_its_peers_and_writes_only_its_own_file(tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "cache-rank00000-of-00001.sqlite") as first:
        first.put("step", "a", [{"x": 1}])
        first.put("step", "b", [{"x": 2}])
    peers = [tmp_path / "cache-rank00000-of-00001.sqlite", tmp_path / "missing.sqlite"]
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all")
    peers.append(tmp_path / "junk.sqlite")
    with ResponseCache(tmp_path / "own.sqlite", peers=peers) as own:
        own.put("step", "b", [{"x": 20}])  # its own value wins over a peer's
        own.flush()
        assert own.get_many("step", ["a", "b", "c"]) == {"a": [{"x": 1}], "b": [{"x": 20}]}
        assert own.stats()["hits"] == 2 and own.stats()["misses"] == 1
        own.put("step", "c", [{"x": 3}])
    with ResponseCache(tmp_path / "cache-rank00000-of-00001.sqlite") as first:
        assert first.get("step", "c") is None  # peers are never written


def test_a_peer_being_written_is_read_as_it_commits(tmp_path: Path) -> None:
    with (
        ResponseCache(tmp_path / "writer.sqlite") as writer,
        ResponseCache(tmp_path / "reader.sqlite", peers=[tmp_path / "writer.sqlite"]) as reader,
    ):
        assert reader.get("s", "k") is None
        writer.put("s", "k", [{"v": "late"}])
        writer.flush()
        assert reader.get("s", "k") == [{"v": "late"}]
