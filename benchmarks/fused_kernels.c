/* Fused loops for benchmarks/bench_fused_c.py: a measurement of what one pass per operation would
   save over numpy's passes on the VAE step (issue 21). Not part of the library. */
#include <math.h>
#include <stddef.h>
/* softplus(x) = max(x,0) + log1p(exp(-|x|)) and sigmoid, one pass each */
void softplus(const float *x, float *out, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        out[i] = fmaxf(x[i], 0.0f) + log1pf(expf(-a));
    }
}
/* Bernoulli log-lik from logits, per element: x*l - softplus(l); grad wrt l: x - sigmoid(l) */
void bce(const float *x, const float *l, float *ll, float *g, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float e = expf(-fabsf(l[i]));
        float sp = fmaxf(l[i], 0.0f) + log1pf(e);
        ll[i] = x[i] * l[i] - sp;
        float s = l[i] >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
        g[i] = x[i] - s;
    }
}
void adam(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float step, float eps) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float mi = b1 * m[i] + (1.0f - b1) * g[i];
        float vi = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
        m[i] = mi; v[i] = vi;
        p[i] -= step * mi / (sqrtf(vi) + eps);
    }
}
