"""The study engine: everything the command lines in scripts/ share.

    launch   starting train.py processes: one local pool (parallel runs, threads, GPUs), torchrun for
             several processes a run, one shell command per run for a scheduler (Slurm arrays), and a
             single run with a time limit; what state a run directory is in (done, resume, new, diverged)
    stats    the numbers: mean ± std over seeds, the paired-by-seed Δ and its one verdict rule, the
             optimization track's tests
    runs     finished run directories read through harness/rundir.py, grouped into settings (runs that
             differ only in their seed), seed-averaged curves
    plots    the figure style and the figures (a comparison of settings, Δ curves, an lr grid)
    tables   number formats and markdown tables
    spec     a study file (YAML): what it may hold, read and checked before any work
    protocol whether a run followed an experiment's protocol (the config the experiment composes)
    compare  any finished runs (any experiment, any optimizer): seed-averaged figure and table
    cli      the launch options and scheduler modes the command lines share, and the launch loop
    figures, tuned, settings
             the three kinds of study (docs in each module), each planning its runs from the study file
             and the finished runs, and writing tables with numbers only

A study is data: a `study.yaml` beside its runs (results/<study>/study.yaml) says which runs it has, their
grids, seeds and comparisons; `python scripts/run_study.py <study.yaml>` runs what is missing and rebuilds the
tables and figures from the finished runs. Prose about the numbers is written by people, in the study's
README.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
