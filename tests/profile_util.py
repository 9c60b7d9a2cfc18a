"""Chip profile variants for tests: the shipped snp.toml with a new name and neuron limit."""

from __future__ import annotations

from pathlib import Path

SNP_TOML = Path(__file__).parents[1] / "runtime" / "chips" / "profiles" / "snp.toml"


def snp_variant(folder: Path, name: str, neurons: int) -> Path:
    text = SNP_TOML.read_text()
    text = text.replace('name = "snp"', f'name = "{name}"')
    text = text.replace('value = 256, source = "seed datasheet"', f'value = {neurons}, source = "assumed"')
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path
