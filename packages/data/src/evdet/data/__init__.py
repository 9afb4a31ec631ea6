"""evdet.data: event readers, representations, preprocessing and sequence datasets."""
