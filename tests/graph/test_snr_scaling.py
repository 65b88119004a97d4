"""The signal-to-noise ratio of DReG's encoder gradient against K rises like sqrt(K), as
Tucker et al. (2019) show (the standard IWAE gradient's falls like 1/sqrt(K), Rainforth et
al. 2018). A one-dimensional Gaussian model, q slightly off the
posterior, one datapoint; SNR = |mean| / sd of each parameter's gradient over the runs."""

import numpy as np
import scg
import scg.distributions as D
from replicas import REP, copies, replica_stats

X = 1.5  # p(z) = N(0, 1), p(x|z) = N(z, 1): posterior N(0.75, sqrt(0.5)); q = N(0.6, 0.8)
RUNS = 1000  # as 2 graphs of 500 independent replicas (replicas.py; test_replicas.py checks DReG)


def snr(k, estimator):
    mu = scg.tensor(copies([0.6], RUNS // 2), requires_grad=True)
    log_sigma = scg.tensor(copies([np.log(0.8)], RUNS // 2), requires_grad=True)

    def build():
        g = scg.Graph()
        with g, g.plate(REP, RUNS // 2):
            q = D.Normal(mu, scg.exp(log_sigma))
            z = g.sample("z", q, n=k, estimator=estimator())
            log_w = (D.Normal(0.0, 1.0).log_prob(z) + D.Normal(z, 1.0).log_prob(X) - q.log_prob(z)).sum(-1)
            if estimator is scg.Reparam:  # the standard IWAE gradient
                g.cost("neg_bound", -(scg.logsumexp(log_w, axis=0) - np.log(k)))
            else:
                g.bound("neg_bound", log_w, over="z")
        return g

    scg.manual_seed(k)
    stats = replica_stats(build, [mu, log_sigma])
    return np.array([s[0] for s in stats.snr])


def test_dreg_snr_rises_with_the_square_root_of_k():
    # K 4 -> 64: sqrt(16) = 4 times the SNR. The SNR estimate from RUNS runs has a relative error
    # of about 1/sqrt(RUNS) (~3%) here, so the ratio's 25% tolerance is many standard errors wide,
    # and a flat or falling SNR (the standard IWAE gradient's falls like 1/sqrt(K)) fails it.
    low, high = snr(4, scg.DReG), snr(64, scg.DReG)
    np.testing.assert_allclose(high / low, 4.0, rtol=0.25)
