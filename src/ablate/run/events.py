"""One TensorBoard event file per run: the files Lightning's reopened writer leaves, merged."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

# One event file per run. Lightning's TensorBoardLogger closes its SummaryWriter when fit ends and
# again when test ends (finalize); the next write reopens it on a new file, so a run got three:
# training, test metrics, HParams. TensorBoard reads a directory's event files as one stream in
# name order, so their records concatenated in that order (file_version headers dropped) are the
# same data in one file.

_RECORD_HEAD = struct.Struct("<QI")  # TFRecord: uint64 length, uint32 masked CRC of the length


def _records(path: Path) -> list[bytes]:
    """The raw TFRecord records of an event file (a torn last record is dropped)."""
    data, out, i = path.read_bytes(), [], 0
    while i + _RECORD_HEAD.size <= len(data):
        (length, _) = _RECORD_HEAD.unpack_from(data, i)
        end = i + _RECORD_HEAD.size + length + 4
        if end > len(data):
            break
        out.append(data[i:end])
        i = end
    return out


def _is_file_version(record: bytes) -> bool:
    from tensorboard.compat.proto.event_pb2 import Event

    event = Event()
    event.ParseFromString(record[_RECORD_HEAD.size : -4])
    return event.HasField("file_version")


def _event_order(path: Path) -> tuple[int, int, str]:
    # events.out.tfevents.<time>.<host>.<pid>.<n>: by time, then the writer's counter
    parts = path.name.split(".")
    stamp, counter = parts[3], parts[-1]
    return (
        int(stamp) if stamp.isdigit() else 0,
        int(counter) if counter.isdigit() else 0,
        path.name,
    )


def merge_event_files(log_dir: str | os.PathLike) -> Path | None:
    """Concatenate this process's event files in log_dir into its first one; returns that file."""
    mine = f".{socket.gethostname()}.{os.getpid()}."
    files = sorted(
        (p for p in Path(log_dir).glob("events.out.tfevents.*") if mine in p.name and p.is_file()),
        key=_event_order,
    )
    if len(files) < 2:
        return files[0] if files else None
    merged = files[0].read_bytes()
    merged += b"".join(r for p in files[1:] for r in _records(p) if not _is_file_version(r))
    tmp = Path(log_dir) / ".merging-events.tmp"  # no "tfevents" in the name: TensorBoard skips it
    with tmp.open("wb") as f:
        f.write(merged)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, files[0])
    for p in files[1:]:
        p.unlink()
    return files[0]
