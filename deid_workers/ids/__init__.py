"""Identifiers files (deid's ids export): values, the export, reading back without code, chunks."""
