"""govsoc detections."""
