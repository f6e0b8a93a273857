"""Bytes <-> Dataset: reading and writing DICOM files, knowing only pydicom (and its internals
only through :mod:`.compat`)."""
