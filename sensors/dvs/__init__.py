"""Event cameras (DVS): file readers, live and network sources, and the chip's DVS front end."""
