"""Copy the faces a borrowed GPU machine needs into one folder, small enough to carry.

The machine gets only the repository and the folders a call carries (64 MiB in all), not
``../shared``. This copies the faces zip and writes the CelebA label files (partition,
identity) cut down to the images the zip holds: the pipeline looks each stored image up
by its file name and reads no other line, so the cut files give the same image store and
split as the full ones, at about 0.5 MB instead of 5.9 MB.

    .venv/bin/python benchmarks/gpudata.py --celeba ../shared/data/celeba --dest .gpudata
"""

from __future__ import annotations

import argparse
import shutil
import zipfile
from pathlib import Path, PurePosixPath

FACES = "celeba-test-faces-64.zip"
LABEL_FILES = ("list_eval_partition.txt", "identity_CelebA.txt")


def zip_image_names(archive: Path) -> set[str]:
    """The file names (no folders) of the members of ``archive``."""
    with zipfile.ZipFile(archive) as handle:
        return {PurePosixPath(name).name for name in handle.namelist() if not name.endswith("/")}


def cut_label_file(source: Path, target: Path, names: set[str]) -> int:
    """Write the lines of ``source`` (``<file name> <label>``) whose file name is in
    ``names`` to ``target``, in their order; returns how many."""
    kept = [line for line in source.read_text().splitlines() if line.split(" ", 1)[0] in names]
    target.write_text("".join(f"{line}\n" for line in kept))
    return len(kept)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--celeba", type=Path, default=Path("../shared/data/celeba"))
    parser.add_argument("--dest", type=Path, default=Path(".gpudata"))
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.celeba / FACES, args.dest / FACES)
    names = zip_image_names(args.dest / FACES)
    for label_file in LABEL_FILES:
        kept = cut_label_file(args.celeba / label_file, args.dest / label_file, names)
        print(f"{args.dest / label_file}: {kept} of the zip's {len(names)} images")
    total = sum(path.stat().st_size for path in args.dest.iterdir() if path.is_file())
    print(f"{args.dest}: {total / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
