"""Hyperparameter optimization: search spaces, samplers (grid, random, Gaussian-process
Bayesian optimization), schedulers (successive halving, Hyperband, ASHA), executors (serial,
local processes, Ray) and studies stored in SQLite. See docs/hpo.md.

    from fusednn import hpo
    space = {"lr": hpo.LogUniform(1e-4, 1e-1), "width": hpo.IntUniform(32, 512, log=True)}
    study = hpo.Study(sampler=hpo.GaussianProcessSearch(space), storage="runs/hpo/study.db", name="mlp")
    study.optimize(objective, n_trials=40)   # objective(config, trial) -> value to minimize
    print(study.best.config, study.best.value)
"""

from fusednn.hpo.executors import ProcessExecutor, RayExecutor, SerialExecutor
from fusednn.hpo.samplers import GaussianProcessSearch, GridSearch, RandomSearch, Sampler, SearchSpaceExhausted
from fusednn.hpo.schedulers import ASHA, Hyperband, Scheduler, SuccessiveHalving
from fusednn.hpo.space import Choice, Dimension, IntUniform, LogUniform, SearchSpace, Uniform
from fusednn.hpo.study import Study, TrialRecord, trial_seed
from fusednn.hpo.trial import Trial, fit_trial
from fusednn.hpo.plots import plot_optimization, plot_parameters, plot_rungs

__all__ = ["Uniform", "LogUniform", "IntUniform", "Choice", "Dimension", "SearchSpace",
           "Sampler", "GridSearch", "RandomSearch", "GaussianProcessSearch", "SearchSpaceExhausted",
           "Scheduler", "SuccessiveHalving", "Hyperband", "ASHA",
           "SerialExecutor", "ProcessExecutor", "RayExecutor",
           "Study", "TrialRecord", "Trial", "trial_seed", "fit_trial",
           "plot_optimization", "plot_parameters", "plot_rungs"]
