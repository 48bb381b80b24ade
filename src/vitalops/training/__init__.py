"""Training: specs, estimators, splits, train-validate-register, bring-your-own models, the demo."""
