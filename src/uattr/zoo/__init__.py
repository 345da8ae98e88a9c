"""What uattr explains out of the box: the data sets (:mod:`.data`), the networks and the
cached posteriors trained on them (:mod:`.models`), and the tabular regression task of
papers/004 (:mod:`.tabular`)."""
