"""Operations on images that methods, metrics and benchmarks share, one idea per module:
segmentations (:mod:`.segment`), the blur every perturbation uses (:mod:`.perturb`),
LIME's masks, kernel and weighted ridge (:mod:`.surrogate`), per-image random draws
(:mod:`.rng`) and argument checks (:mod:`.checks`)."""
