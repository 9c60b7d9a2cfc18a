"""What every file replay source shares: expanding folders, and labels keyed by resolved path."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from sensors.blocks import InputError

log = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]


def expand_paths(paths: Sequence[Path], suffixes: Sequence[str], what: str | None = None) -> list[Path]:
    """Files as given, folders replaced by their files with one of ``suffixes``, sorted.

    Other entries of a folder (other files, sub-folders) are not replayed; that is logged at
    INFO with their names, not silent. ``what`` names the files in the error for a folder
    that holds none (default: the suffixes).
    """
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            entries = sorted(path.iterdir())
            found = [p for p in entries if p.suffix.lower() in suffixes and p.is_file()]
            others = [p.name + ("/" if p.is_dir() else "") for p in entries if p not in found]
            if others:
                log.info("%s: not replayed (other files, or folders): %s", path, ", ".join(others))
            if not found:
                kind = f"{what} ({' '.join(suffixes)})" if what else f"{'/'.join(suffixes)} files"
                msg = f"{path}: folder holds no {kind}"
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


class BadFiles:
    """What a file replay does with a bad file: ``raise`` ends the replay; ``skip`` logs,
    records and counts it, and the replay goes on."""

    def __init__(self, on_error: OnError) -> None:
        if on_error not in ("raise", "skip"):
            msg = f"on_error must be 'raise' or 'skip', got {on_error!r}"
            raise ValueError(msg)
        self.on_error: OnError = on_error
        self.errors: list[InputError] = []
        """Errors of skipped files (on_error="skip"), in the order they happened."""
        self.skipped_files = 0

    def _skip(self, exc: InputError) -> None:
        if self.on_error == "raise":
            raise exc
        self.errors.append(exc)
        self.skipped_files += 1
        log.warning("skipping file: %s", exc)
