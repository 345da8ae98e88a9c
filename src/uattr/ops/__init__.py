"""Operations on images that methods, metrics and benchmarks share, one idea per module:
segmentations (:mod:`.segment`), the blur every perturbation uses (:mod:`.perturb`),
LIME's masks, kernel and weighted ridge (:mod:`.surrogate`), per-image random draws
(:mod:`.rng`), argument checks (:mod:`.checks`) and how many images go through a
posterior at once (:mod:`.chunks`)."""
