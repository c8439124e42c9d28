"""From a scan to its outputs: opening a model from ``--model``, the zoo segmenter, the batch
runner and its run record, outputs, the ROI cascade, QC pictures, label statistics and the demo."""
