"""RL Unplugged's Atari shards as offrl datasets, read without TensorFlow.

RL Unplugged (Gulcehre et al., 2020) publishes, per game and run, shards named
``run_<r>-<i>-of-00100``: GZIP-compressed TFRecord files of ``tf.train.Example`` records, each one
transition of a DQN training run (the data is shuffled), with the features

    o_t, o_tp1        4 PNG-encoded 84 x 84 grey frames each (the stacked observation)
    a_t, a_tp1        int64 actions
    r_t, d_t          float32 reward and discount (0 at a terminal)
    episode_id        int64 (a uint64 bit pattern), episode_return float32

:func:`load_rlu_atari` reads shards into a :class:`~offrl.data.Dataset` of ``uint8 [4, 84, 84]``
observations (the frame order of RL Unplugged's own Tianshou conversion) with their explicit
next observations, discrete actions, and terminals where ``d_t == 0``. Since the shards are
shuffled, every transition is its own episode piece: a non-terminal row is stored as a
truncation (``timeouts``), which bootstraps from ``o_tp1`` exactly as it should; episode ids and
returns are kept in ``metadata`` (counts only).

The TFRecord framing (length, masked CRC-32C of the length, data, masked CRC-32C of the data) and
the protobuf wire format of ``tf.train.Example`` are decoded here; PNGs with Pillow. Every
record's length checksum is verified; ``verify_data=True`` also checks each record's data
checksum (a pure-Python CRC, about 10 MB/s: for tests and for suspect files).
"""

from __future__ import annotations

import gzip
import io
import os
import re
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from offrl.data.dataset import Dataset, DatasetError
from offrl.data.loaders import PathLike, _build, _register_file_reader

__all__ = ["load_rlu_atari", "read_tfrecords", "parse_example", "masked_crc32c"]

_FEATURES = ("o_t", "o_tp1", "a_t", "r_t", "d_t")


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (Castagnoli) of ``data``."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _open(path: Path) -> IO[bytes]:
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")  # noqa: SIM115  (the caller closes it)


def read_tfrecords(path: PathLike, verify_data: bool = False) -> Iterator[bytes]:
    """The records of a TFRecord file (GZIP-compressed or not), in order.

    Raises:
        DatasetError: a truncated record or a checksum that does not match, naming the record.
    """
    p = Path(path)
    with _open(p) as f:
        index = 0
        while True:
            head = f.read(12)
            if not head:
                return
            if len(head) < 12:
                raise DatasetError(f"record {index}: the file ends inside its header in {p}")
            (length,) = struct.unpack("<Q", head[:8])
            (length_crc,) = struct.unpack("<I", head[8:])
            if masked_crc32c(head[:8]) != length_crc:
                raise DatasetError(f"record {index}: its length checksum does not match in {p}")
            data = f.read(length)
            tail = f.read(4)
            if len(data) < length or len(tail) < 4:
                raise DatasetError(f"record {index}: the file ends inside its data in {p}")
            if verify_data and masked_crc32c(data) != struct.unpack("<I", tail)[0]:
                raise DatasetError(f"record {index}: its data checksum does not match in {p}")
            yield data
            index += 1


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise DatasetError("record: a protobuf varint runs past the end of the record")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """``(field number, wire type, value)`` of a protobuf message: varints as ints, 32-bit
    values as 4 raw bytes, length-delimited values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        else:
            raise DatasetError(f"record: unsupported protobuf wire type {wire}")
        yield number, wire, value


def _feature(buf: bytes) -> list[Any]:
    """The values of one ``tf.train.Feature``: bytes, float32 or int64 (packed or not)."""
    for number, _, body in _fields(buf):
        values: list[Any] = []
        for _, wire, value in _fields(body):
            if number == 1:  # BytesList
                values.append(bytes(value))
            elif number == 2:  # FloatList
                if wire == 2:
                    values.extend(struct.unpack(f"<{len(value) // 4}f", value))
                else:
                    values.append(struct.unpack("<f", value)[0])
            elif number == 3:  # Int64List
                if wire == 2:
                    pos = 0
                    while pos < len(value):
                        v, pos = _varint(value, pos)
                        values.append(v - (1 << 64) if v >= 1 << 63 else v)
                else:
                    values.append(value - (1 << 64) if value >= 1 << 63 else value)
        return values
    return []


def parse_example(record: bytes) -> dict[str, list[Any]]:
    """A serialised ``tf.train.Example`` as ``{feature name: values}``."""
    out: dict[str, list[Any]] = {}
    for number, _, features in _fields(record):
        if number != 1:
            continue
        for entry_number, _, entry in _fields(features):  # map<string, Feature> entries
            if entry_number != 1:
                continue
            name, value = "", b""
            for field, _, part in _fields(entry):
                if field == 1:
                    name = bytes(part).decode("utf-8")
                elif field == 2:
                    value = part
            out[name] = _feature(value)
    return out


def _frames(pngs: Sequence[bytes], where: str) -> np.ndarray:
    from PIL import Image

    if len(pngs) != 4:
        raise DatasetError(f"{where}: expected 4 PNG frames, found {len(pngs)}")
    frames = []
    for png in pngs:
        try:
            frame = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
        except Exception as exc:  # Pillow's many errors for a damaged image
            raise DatasetError(f"{where}: a frame is not a readable PNG ({exc})") from exc
        frames.append(frame)
    if {f.shape for f in frames} != {(84, 84)}:
        raise DatasetError(f"{where}: frames must be 84 x 84, found {[f.shape for f in frames]}")
    return np.stack(frames)


def _paths(shards: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(shards, (str, os.PathLike)):
        return [Path(shards)]
    return [Path(s) for s in shards]


def load_rlu_atari(
    shards: PathLike | Sequence[PathLike],
    env_id: str | None = None,
    max_transitions: int | None = None,
    verify_data: bool = False,
) -> Dataset:
    """Load RL Unplugged Atari shards (one path or several) as one dataset.

    Args:
        shards: ``run_<r>-<i>-of-00100`` files (GZIP TFRecord).
        env_id: the Gymnasium environment of the game (RL Unplugged used sticky actions).
        max_transitions: stop after this many transitions (a full shard holds ~500k, 28 GB of
            observations and next observations).
        verify_data: check every record's data checksum too (slow: pure Python).

    Raises:
        DatasetError: a malformed record, a missing feature or a bad frame (the message names
            the feature, the record and the file).
    """
    paths = _paths(shards)
    obs: list[np.ndarray] = []
    nxt: list[np.ndarray] = []
    act: list[int] = []
    rew: list[float] = []
    disc: list[float] = []
    episodes: set[int] = set()
    for p in paths:
        for i, record in enumerate(read_tfrecords(p, verify_data)):
            if max_transitions is not None and len(act) >= max_transitions:
                break
            ex = parse_example(record)
            where = f"record {i} of {p}"
            for key in _FEATURES:
                if key not in ex or not ex[key]:
                    raise DatasetError(f"{key}: missing from {where}")
            obs.append(_frames(ex["o_t"], f"o_t: {where}"))
            nxt.append(_frames(ex["o_tp1"], f"o_tp1: {where}"))
            act.append(int(ex["a_t"][0]))
            rew.append(float(ex["r_t"][0]))
            disc.append(float(ex["d_t"][0]))
            if ex.get("episode_id"):
                episodes.add(int(ex["episode_id"][0]))
    if not act:
        raise DatasetError(f"records: no transition in {[str(p) for p in paths]}")
    if min(act) < 0:
        raise DatasetError(f"a_t: actions must be non-negative, found {min(act)}")
    terminals = np.asarray(disc) == 0.0
    meta = {
        "source": ", ".join(str(p) for p in paths),
        "format": "rl-unplugged-atari",
        "rlu_episode_ids": len(episodes),
        "note": "shuffled transitions: each row is its own episode piece",
    }
    arrays = {
        "observations": np.stack(obs),
        "next_observations": np.stack(nxt),
        "actions": np.asarray(act, dtype=np.int64),
        "rewards": np.asarray(rew, dtype=np.float32),
        "terminals": terminals,
        "timeouts": ~terminals,
    }
    return _build(paths[0], arrays, env_id, meta)


_SHARD_NAME = re.compile(r"run_\d+-\d{5}-of-\d{5}(\.tfrecord)?(\.gz)?")


def _read_if_rlu(path: Path, env_id: str | None) -> Dataset | None:
    """``load_dataset`` of a file named as RL Unplugged names its shards."""
    return load_rlu_atari(path, env_id=env_id) if _SHARD_NAME.fullmatch(path.name) else None


_register_file_reader(_read_if_rlu)
