"""Chip emulators: profiles (data) plus kernels (numba)."""
