"""RL Unplugged Atari shards read without TensorFlow: a small shard written here in RL
Unplugged's schema (``tf.train.Example`` built with the real protobuf runtime from the message
definitions of TensorFlow's ``example.proto`` / ``feature.proto``, PNG frames, GZIP TFRecord
framing) is read back exactly; damage is refused by name."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from offrl.data import DatasetError
from offrl.data.rlu_files import load_rlu_atari, masked_crc32c, parse_example, read_tfrecords

pb = pytest.importorskip("google.protobuf")


def _example_class() -> Any:
    """``tensorflow.Example`` from its message definitions (no TensorFlow needed)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    f = descriptor_pb2.FileDescriptorProto(name="offrl_test_example.proto", package="tfx")
    f.syntax = "proto3"
    label, rep = descriptor_pb2.FieldDescriptorProto, descriptor_pb2.FieldDescriptorProto

    def message(name: str, *fields: tuple[str, int, int, str | None, bool]) -> Any:
        m = f.message_type.add(name=name)
        for fname, number, ftype, type_name, packed in fields:
            field = m.field.add(name=fname, number=number, type=ftype, label=rep.LABEL_REPEATED)
            if type_name:
                field.type_name = type_name
            if packed:
                field.options.packed = True
        return m

    message("BytesList", ("value", 1, label.TYPE_BYTES, None, False))
    message("FloatList", ("value", 1, label.TYPE_FLOAT, None, True))
    message("Int64List", ("value", 1, label.TYPE_INT64, None, True))
    feature = f.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for name, number, type_name in (
        ("bytes_list", 1, ".tfx.BytesList"),
        ("float_list", 2, ".tfx.FloatList"),
        ("int64_list", 3, ".tfx.Int64List"),
    ):
        fd = feature.field.add(name=name, number=number, type=label.TYPE_MESSAGE)
        fd.label, fd.type_name, fd.oneof_index = label.LABEL_OPTIONAL, type_name, 0
    features = f.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    key = entry.field.add(name="key", number=1, type=label.TYPE_STRING)
    key.label = label.LABEL_OPTIONAL
    value = entry.field.add(name="value", number=2, type=label.TYPE_MESSAGE)
    value.label, value.type_name = label.LABEL_OPTIONAL, ".tfx.Feature"
    field = features.field.add(name="feature", number=1, type=label.TYPE_MESSAGE)
    field.label, field.type_name = label.LABEL_REPEATED, ".tfx.Features.FeatureEntry"
    example = f.message_type.add(name="Example")
    field = example.field.add(name="features", number=1, type=label.TYPE_MESSAGE)
    field.label, field.type_name = label.LABEL_OPTIONAL, ".tfx.Features"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tfx.Example"))


def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(frame, mode="L").save(out, format="PNG")
    return out.getvalue()


def _record(data: bytes) -> bytes:
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def _shard(path: Path, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` transitions in RL Unplugged's schema, GZIP TFRecord; returns what was written."""
    Example = _example_class()
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, (n, 4, 84, 84), dtype=np.uint8)
    nxt = rng.integers(0, 256, (n, 4, 84, 84), dtype=np.uint8)
    act = rng.integers(0, 18, n)
    rew = rng.normal(size=n).astype(np.float32)
    disc = (rng.random(n) > 0.2).astype(np.float32)
    ids = rng.integers(0, 2**63, n)
    with gzip.open(path, "wb") as f:
        for i in range(n):
            ex = Example()
            feat = ex.features.feature
            feat["o_t"].bytes_list.value.extend([_png(x) for x in obs[i]])
            feat["o_tp1"].bytes_list.value.extend([_png(x) for x in nxt[i]])
            feat["a_t"].int64_list.value.append(int(act[i]))
            feat["a_tp1"].int64_list.value.append(int(act[(i + 1) % n]))
            feat["r_t"].float_list.value.append(float(rew[i]))
            feat["d_t"].float_list.value.append(float(disc[i]))
            feat["episode_id"].int64_list.value.append(int(ids[i]))
            feat["episode_return"].float_list.value.append(1.5)
            f.write(_record(ex.SerializeToString()))
    return {"obs": obs, "next": nxt, "act": act, "rew": rew, "disc": disc}


def test_crc32c_check_value() -> None:
    """CRC-32C's published check value, CRC("123456789") = 0xE3069283, under TFRecord's mask."""
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_a_shard_in_rl_unplugged_schema_reads_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "run_1-00000-of-00100"
    written = _shard(path, 12)
    ds = load_rlu_atari(path, verify_data=True)
    assert ds.observations.shape == (12, 4, 84, 84) and ds.observations.dtype == np.uint8
    assert np.array_equal(ds.observations, written["obs"])
    assert np.array_equal(ds.next_observations, written["next"])
    assert ds.discrete and np.array_equal(ds.actions, written["act"])
    assert np.array_equal(ds.rewards, written["rew"])
    assert np.array_equal(ds.terminals, written["disc"] == 0)
    assert np.array_equal(ds.timeouts, written["disc"] != 0)  # shuffled: each row a piece
    assert ds.metadata["format"] == "rl-unplugged-atari"
    assert len(load_rlu_atari([path, path], max_transitions=15)) == 15
    from offrl.data import load_dataset

    assert len(load_dataset(path)) == 12  # recognised by RL Unplugged's shard name


def test_parse_example_reads_every_feature(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    _shard(path, 1)
    (record,) = list(read_tfrecords(path, verify_data=True))
    ex = parse_example(record)
    assert set(ex) == {"o_t", "o_tp1", "a_t", "a_tp1", "r_t", "d_t", "episode_id", "episode_return"}
    assert len(ex["o_t"]) == 4 and ex["episode_return"] == [1.5]


def test_damaged_shards_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    _shard(path, 2)
    raw = gzip.decompress(path.read_bytes())
    cut = tmp_path / "cut"
    cut.write_bytes(raw[: len(raw) - 10])  # uncompressed framing works too
    with pytest.raises(DatasetError, match="record 1: the file ends inside its data"):
        load_rlu_atari(cut)
    flipped = bytearray(raw)
    flipped[40] ^= 0xFF  # inside record 0's data
    bad = tmp_path / "bad"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(DatasetError, match="record 0: its data checksum"):
        load_rlu_atari(bad, verify_data=True)
    header = bytearray(raw)
    header[0] ^= 0x01  # record 0's length
    bad.write_bytes(bytes(header))
    with pytest.raises(DatasetError, match="record 0: its length checksum"):
        load_rlu_atari(bad)
