"""Sources (live and file readers) and spike encoders, one package per modality.

Never imports ``runtime``: sensors are usable and testable on their own.
"""
