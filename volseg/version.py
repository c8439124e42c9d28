"""volseg's version, in one module every writer that stamps its outputs (DICOM SEG, RTSTRUCT, records) imports
without importing the package's public API."""

__version__ = "0.1.0"
