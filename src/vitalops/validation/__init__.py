"""Clinical validation: metrics with bootstrap intervals, calibration, decision curves,
subgroup fairness, validation reports and model cards. Pure computation on arrays."""
