"""DICOM: archive discovery, series rules, the source series, SEG and RTSTRUCT reading and writing,
anatomy codes, and the PACS round trip over DICOMweb."""
