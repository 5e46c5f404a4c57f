"""Expert selection: features per expert (cached) -> proxy score (kNN LOO, ...) -> ranking.

Modules: `features` (embedding with progress, optional tf.distribute) and `feature_cache` (on-disk
.npz cache); `knn` (exact leave-one-out kNN, the paper's proxy); `proxies` (the registry:
`ProxyInputs`, `score`, `rank`) over `matching` (label matching, domain
prediction), `logme`, `leep`, `hscore` and `linear_probe`; `plots` (PNG score bars, heat maps);
`selection` (scores a pool of experts on a task with one feature pass).
"""
