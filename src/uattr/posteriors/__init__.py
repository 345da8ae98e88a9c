"""Posteriors beyond the deep ensemble of :mod:`uattr.uq`: those that sample one
stochastic network (:mod:`.sampled`: MC-Dropout, MC-DropConnect, Flipout), their
stochastic layers (:mod:`.stochastic`), and the counting of posterior passes
(:mod:`.passes`)."""
