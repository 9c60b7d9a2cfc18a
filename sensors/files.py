"""What every file replay source shares: expanding folders, and labels keyed by resolved path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from sensors.blocks import InputError


def expand_paths(paths: Sequence[Path], suffixes: Sequence[str]) -> list[Path]:
    """Files as given, folders replaced by their files with one of ``suffixes``, sorted."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in suffixes and p.is_file())
            if not found:
                msg = f"{path}: folder holds no {'/'.join(suffixes)} files"
                raise InputError(msg)
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            msg = f"{path}: no such file or folder"
            raise InputError(msg)
    return files


class LabelLookup:
    """Ground-truth labels keyed by resolved file path (see ``runtime.build.read_labels``)."""

    def __init__(self, labels: Mapping[str, str] | None) -> None:
        self.labels = labels
        self._resolved_dirs: dict[Path, Path] = {}

    def __call__(self, path: Path) -> str | None:
        if self.labels is None:
            return None
        # Resolving a path costs a syscall per component; files share a few folders, so
        # resolve each folder once. A file that is itself a symlink falls back to a full resolve.
        parent = self._resolved_dirs.get(path.parent)
        if parent is None:
            parent = self._resolved_dirs[path.parent] = path.parent.resolve()
        label = self.labels.get(str(parent / path.name))
        return label if label is not None else self.labels.get(str(path.resolve()))
