"""Stores in object storage (`s3://`, `gs://`, `abfs://`): the same layout, through pyarrow's filesystems.

Credentials and endpoint come from the provider's standard environment and config
(for S3: AWS_ACCESS_KEY_ID / AWS_PROFILE / AWS_ENDPOINT_URL ...); nothing here
stores or prints them. An object store has no rename, but a PUT is atomic: a
part is written straight to its final key and appears whole or not at all. Part
names are unique per writer segment, so writers on many hosts need no
coordination. The journal of a remote store stays on local disk (under the cache
directory, one folder per store URI) and is shipped as parts.

Reading needs no DuckDB extension (machines may be offline): the parts are opened
as a pyarrow dataset and registered with DuckDB, which pushes column selection and
filters down to it, so row-group statistics prune what is read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from distill_cli.errors import InputError

SCHEMES = ("s3://", "gs://", "gcs://", "abfs://", "abfss://", "az://")


def is_remote(path) -> bool:
    return isinstance(path, str) and path.startswith(SCHEMES)


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, root path without scheme) for a store URI; InputError when unusable."""
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as e:
        raise InputError(f"{uri}: cannot open object storage ({_short(e)})") from None
    return fs, root.rstrip("/")


def journal_dir(uri: str) -> Path:
    """Local journal directory of a remote store: one folder per store URI, under the cache directory."""
    base = os.environ.get("DISTILL_JOURNAL_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "distill", "journal"
    )
    return Path(base) / hashlib.sha256(uri.encode()).hexdigest()[:16]


def check_writable(uri: str) -> None:
    """Refuse a store URI whose bucket is missing or unreachable, before anything is journaled."""
    fs, root = filesystem(uri)
    bucket = root.split("/", 1)[0]
    try:
        info = fs.get_file_info(bucket)
    except OSError as e:
        raise InputError(f"{uri}: cannot reach object storage ({_short(e)})") from None
    if info.type == pafs.FileType.NotFound:
        raise InputError(f"{uri}: bucket {bucket!r} does not exist")


def part_files(uri: str) -> list[str]:
    """Every `date=*/part-*.parquet` under a remote store, sorted; a prefix with none is an empty store."""
    fs, root = filesystem(uri)
    try:
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    except OSError as e:
        raise InputError(f"{uri}: cannot list ({_short(e)})") from None
    if len(infos) == 0 and _is_object(fs, root):
        return [root]  # a single Parquet file given by URI
    files = []
    for info in infos:
        rel = info.path[len(root) + 1 :]
        parts = rel.split("/")
        if info.type == pafs.FileType.File and len(parts) == 2 and parts[0].startswith("date=") and parts[1].endswith(".parquet"):
            files.append(info.path)
    return sorted(files)


def _is_object(fs: pafs.FileSystem, path: str) -> bool:
    try:
        return fs.get_file_info(path).type == pafs.FileType.File
    except OSError:
        return False


def write_part(uri: str, relative: str, table: pa.Table) -> str | None:
    """PUT one part at `<root>/<relative>` unless it exists already; returns its path, or None when skipped."""
    fs, root = filesystem(uri)
    key = f"{root}/{relative}"
    if _is_object(fs, key):
        return None
    with fs.open_output_stream(key) as f:
        pq.write_table(table, f, compression="zstd", row_group_size=100_000)
    return key


def _short(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
