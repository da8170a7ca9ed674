"""ct_fairness: population shift by age and sex in abdominal CT organ segmentation (Cevora et al., 2024)."""
