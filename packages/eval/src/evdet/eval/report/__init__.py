"""Reports a person reads: one run (``evdet-report run``) and several runs side by side (``evdet-report compare``).

Both read a run's folder as :mod:`evdet.eval.report.run_folder` loads it (the layout is ``docs/run-folder.md``).
"""
