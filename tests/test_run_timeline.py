from benchmarks.run_timeline import stage_walls, table


def test_each_stage_is_charged_until_the_next_one_starts_and_the_last_until_the_lock_is_written():
    stamped = [(0.0, "Verifying data sources"), (1.0, "Running stage 'nova-ingest':"), (2.0, "> python -m x"),
               (4.5, "Updating lock file 'dvc.lock'"), (5.0, "Running stage 'nova-train':"),
               (9.0, "Stage 'ct_fairness-ingest' didn't change, skipping"), (12.0, "Running stage 'cmr_recon-ingest':"),
               (20.0, "Updating lock file 'dvc.lock'"), (21.0, "Reproduction scorecard (claims ...):")]
    walls = stage_walls(stamped)
    assert walls == {"nova-ingest": 4.0, "nova-train": 7.0, "cmr_recon-ingest": 8.0}
    lines = table(walls, 22.0).splitlines()
    assert "| cmr_recon | 1 | 8 |" in lines and "| nova | 2 | 11 |" in lines
    assert lines[-1] == "| all | 3 | 19 of 22 s in all |"
