"""evdet.data: event readers, the stacked-histogram representation, preprocessing into shards, labels and the run
store. Needs no torch: the sequence dataset over shards lives with training (:mod:`evdet.model.training.dataset`)."""
