"""The data stage keyed on what its files hold, not on where they lie.

The rule ``extract_images`` takes the SHA-256 of the source, the partition file and the
identity file as its params (and no input files), so that:

- a moved or renamed but byte-identical source (or a copy at another path) reruns
  nothing downstream: the checksums are the same;
- a missing data folder does not block commands that do not need it (a dry run of a
  finished tree, ``--unlock``): when the image store exists, a missing source counts as
  the one the store was built from (its ``source_sha256`` attribute), a missing label
  file as the one last seen, so nothing is out of date; only when the store itself must
  be built is a missing file an error;
- a source that is neither a zip file nor a folder (``LOWSHOT_DATA`` pointing at a text
  file) stops the run before any job, so Snakemake never deletes a good store for a job
  that would fail.

Hashing a 1.4 GB CelebA zip takes seconds, so checksums are remembered in a small JSON
record beside the store, keyed on (absolute path, size, modification time): a parse that
finds the files unchanged only stats them.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

from lowshot.data.sources import DataError, missing_source_message, source_checksum
from lowshot.io import atomic_path

PathLike = str | os.PathLike[str]
# The record beside the store: {"files": {"<path>|<size>|<mtime_ns>": sha256},
# "last": {role: sha256}}.
RECORD_NAME = ".fingerprints.json"


def check_source_kind(source: Path) -> None:
    """Raise ``DataError`` unless ``source`` is a folder or a zip file."""
    if source.is_dir() or zipfile.is_zipfile(source):
        return
    raise DataError(
        f"data source {source} is neither a zip file nor a folder of images; point "
        "LOWSHOT_DATA (or data.source) at img_align_celeba.zip or its unzipped folder"
    )


def data_fingerprint(files: Mapping[str, Path | None], store: PathLike) -> dict[str, str | None]:
    """The checksums (``role -> sha256``, None for a file not configured) of the data files.

    files: role -> path, the roles ``source``, ``partition_file``, ``identity_file``;
    store: the image store (``results/data/images.h5``); the record lives beside it.
    Raises ``DataError`` for a source that is not a zip file or a folder, and for a
    missing file when the store does not exist (the stage must run and cannot).
    """
    store = Path(store)
    record_path = store.with_name(RECORD_NAME)
    record = _read_record(record_path)
    fingerprint: dict[str, str | None] = {}
    for role, path in files.items():
        if path is None:
            fingerprint[role] = None
        elif path.exists():
            if role == "source":
                check_source_kind(path)
            fingerprint[role] = _cached_checksum(path, record["files"])
        elif store.exists() and role == "source":
            fingerprint[role] = stored_source_checksum(store)
        elif store.exists() and role in record["last"]:
            fingerprint[role] = record["last"][role]
        elif role == "source":
            raise DataError(missing_source_message(path))
        else:
            raise DataError(f"data.{role}: {path} does not exist; give the file, or null")
    record["last"].update({role: value for role, value in fingerprint.items() if value})
    _write_record(record_path, record)
    return fingerprint


def stored_source_checksum(store: Path) -> str:
    """The ``source_sha256`` attribute of an existing image store."""
    import h5py

    with h5py.File(store, "r") as handle:
        value = handle.attrs["source_sha256"]
    return value.decode() if isinstance(value, bytes) else str(value)


def _cached_checksum(path: Path, known: dict[str, str]) -> str:
    if path.is_dir():  # a folder's fingerprint stats its files: cheap, and never stale
        return source_checksum(path)
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if key not in known:
        known[key] = source_checksum(path)
    return known[key]


def _read_record(path: Path) -> dict[str, dict[str, str]]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"files": {}, "last": {}}
    if not isinstance(record, dict):
        return {"files": {}, "last": {}}
    return {key: dict(record.get(key) or {}) for key in ("files", "last")}


def _write_record(path: Path, record: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1, sort_keys=True)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
