"""Radar: recordings (Acconeer A121/A111 HDF5, TI mmWave raw ADC, generic cubes), live UDP frames, the spike encoder."""
