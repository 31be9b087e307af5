"""Split: patient-level test hold-out and cross-validation folds."""
