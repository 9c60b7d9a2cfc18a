"""Model bundles (NIR graph + manifest), loading and validation, training recipes.

Never imports ``runtime``.
"""
