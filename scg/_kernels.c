/* Fused loops for the elementwise passes that dominate a training step once its matrix products
   are done (issue 21): one pass over memory where numpy makes five to ten. Loaded by
   scg/kernels.py, which compiles this file on first use and falls back to numpy without it.

   Built without -ffast-math: IEEE semantics (NaN and infinities propagate, no reassociation, no
   fused multiply-add: -ffp-contract=off), so the Adam loop rounds exactly as numpy's passes do.
   expf and log1pf are declared SIMD-capable by hand (glibc's headers do so only under
   -ffast-math) so that the loops call glibc's vector math library (libmvec, within 4 ulps);
   -fno-math-errno lets the compiler vectorize them (the vector variants set no errno).

   Every function takes contiguous arrays of n elements; scg/kernels.py checks that. */
#include <float.h>
#include <math.h>
#include <stddef.h>

__attribute__((simd("notinbranch"))) float expf(float);
__attribute__((simd("notinbranch"))) float log1pf(float);

/* The transcendental loops run in blocks of W elements through one vectorized block function;
   the last, partial block is padded to W. So every element goes through the same vector code
   wherever it sits in the array, and a result does not depend on how scg.parallel cuts the
   array between threads (a scalar remainder loop would call the scalar expf, which rounds
   differently). */
#define W 16
#define BLOCKED(NAME, BODY)                                                                        \
static inline void NAME##_block(const float *restrict x, float *restrict out) {                   \
    _Pragma("omp simd")                                                                            \
    for (int i = 0; i < W; i++) { float a = x[i]; out[i] = (BODY); }                               \
}                                                                                                  \
void NAME(const float *restrict x, float *restrict out, size_t n) {                               \
    size_t i = 0;                                                                                  \
    for (; i + W <= n; i += W) NAME##_block(x + i, out + i);                                       \
    if (i < n) {                                                                                   \
        float xb[W] = {0}, ob[W];                                                                  \
        for (size_t j = 0; j < n - i; j++) xb[j] = x[i + j];                                       \
        NAME##_block(xb, ob);                                                                      \
        for (size_t j = 0; j < n - i; j++) out[i + j] = ob[j];                                     \
    }                                                                                              \
}

/* The same for two inputs a = x[i], b = y[i]. */
#define BLOCKED2(NAME, BODY)                                                                       \
static inline void NAME##_block(const float *restrict x, const float *restrict y,                 \
                                float *restrict out) {                                             \
    _Pragma("omp simd")                                                                            \
    for (int i = 0; i < W; i++) { float a = x[i], b = y[i]; out[i] = (BODY); }                     \
}                                                                                                  \
void NAME(const float *restrict x, const float *restrict y, float *restrict out, size_t n) {      \
    size_t i = 0;                                                                                  \
    for (; i + W <= n; i += W) NAME##_block(x + i, y + i, out + i);                                \
    if (i < n) {                                                                                   \
        float xb[W] = {0}, yb[W] = {0}, ob[W];                                                     \
        for (size_t j = 0; j < n - i; j++) { xb[j] = x[i + j]; yb[j] = y[i + j]; }                 \
        NAME##_block(xb, yb, ob);                                                                  \
        for (size_t j = 0; j < n - i; j++) out[i + j] = ob[j];                                     \
    }                                                                                              \
}

/* softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): no overflow for large |x|.
   A NaN gives NaN (through exp), +inf gives +inf, -inf gives 0. */
BLOCKED(softplus_f32, (a > 0.0f ? a : 0.0f) + log1pf(expf(-fabsf(a))))

/* sigmoid(x) = 1 / (1 + exp(-x)), as numpy computes it in scg.ops (exp(-x) = inf gives 0).
   Within 3.3 ulps (libmvec's expf is within ~3 here, numpy's within ~2.3); the form
   e / (1 + e) for x < 0, e = exp(x), measured no better. */
BLOCKED(sigmoid_f32, 1.0f / (1.0f + expf(-a)))

/* The Bernoulli log-likelihood of a = x from logits b = l, x l - softplus(l) (log sigmoid(l) at
   x = 1, log sigmoid(-l) at x = 0), and its derivative in l, x - sigmoid(l): one pass each where
   numpy makes three and, for the backward pass, five. With softplus(l) = max(l, 0) + log1p(e),
   e = exp(-|l|), the log-likelihood is (x - [l > 0]) l - log1p(e): at x in {0, 1} the first term
   is exactly 0 where the outcome is the likely one, so log p = -log1p(e) keeps its digits (at
   l = 20, -2.06e-9, where x l - softplus(l) cancels to 0). */
BLOCKED2(bernoulli_log_prob_f32, (a - (b > 0.0f ? 1.0f : 0.0f)) * b - log1pf(expf(-fabsf(b))))
BLOCKED2(bernoulli_score_f32, a - 1.0f / (1.0f + expf(-b)))
/* Its negation, -log p: the cost graph.observe makes of it, in the same pass (a traced step fuses
   the negation into the log-likelihood when nothing else reads the latter; negating is exact). */
BLOCKED2(bernoulli_nll_f32, -((a - (b > 0.0f ? 1.0f : 0.0f)) * b - log1pf(expf(-fabsf(b)))))

/* g (x - sigmoid(l)): the log-likelihood's backward pass with the incoming gradient g multiplied
   in, one pass where the product would make another. g is an array of n (c = g[i]), or one
   number spread over the array (a sum's seed, after a negation: c = g[0]). */
#define SCORE_TIMES(NAME, STEP)                                                                    \
static inline void NAME##_block(const float *restrict x, const float *restrict y,                 \
                                const float *restrict g, float *restrict out) {                    \
    _Pragma("omp simd")                                                                            \
    for (int i = 0; i < W; i++) { float a = x[i], b = y[i], c = g[i * STEP]; out[i] = c * (a - 1.0f / (1.0f + expf(-b))); } \
}                                                                                                  \
void NAME(const float *restrict x, const float *restrict y, const float *restrict g,              \
          float *restrict out, size_t n) {                                                         \
    size_t i = 0;                                                                                  \
    for (; i + W <= n; i += W) NAME##_block(x + i, y + i, g + i * STEP, out + i);                  \
    if (i < n) {                                                                                   \
        float xb[W] = {0}, yb[W] = {0}, gb[W] = {0}, ob[W];                                        \
        for (size_t j = 0; j < n - i; j++) { xb[j] = x[i + j]; yb[j] = y[i + j]; gb[j] = g[(i + j) * STEP]; } \
        NAME##_block(xb, yb, gb, ob);                                                              \
        for (size_t j = 0; j < n - i; j++) out[i + j] = ob[j];                                     \
    }                                                                                              \
}
SCORE_TIMES(bernoulli_score_times_f32, 1)   /* g an array of n */
SCORE_TIMES(bernoulli_score_scaled_f32, 0)  /* g one number */

/* relu's backward pass: g (a) where x (b) > 0, else 0, as np.where(x > 0, g, 0) (a NaN or inf in
   g stays where x > 0, and is dropped elsewhere). One pass where numpy makes four. */
BLOCKED2(relu_grad_f32, b > 0.0f ? a : 0.0f)

/* relu as np.maximum(x, 0) computes it, to the bit: x where x > 0 or x is NaN (the same NaN), else
   +0 (so -0 gives +0). One vectorized pass, about twice numpy's NaN-propagating maximum. */
#define RELU(v) ((v) > 0.0f || (v) != (v) ? (v) : 0.0f)
void relu_f32(const float *restrict x, float *restrict out, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) { float a = x[i]; out[i] = RELU(a); }
}

/* relu(x + b) for x of rows x cols and b of cols (a dense layer's bias added to its product,
   then its activation): one pass where numpy makes two, each element rounded as np.add then
   np.maximum round it. A traced step fuses the pair when nothing else reads the sum. Returns 1
   if a sum is not finite (an overflow, inf - inf, a NaN): the caller then redoes the pair with
   numpy, whose add reports it as np.errstate says and picks a NaN's bits as it does. */
int bias_relu_f32(const float *restrict x, const float *restrict b, float *restrict out, size_t rows,
                  size_t cols) {
    int odd = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *restrict xr = x + r * cols;
        float *restrict o = out + r * cols;
        #pragma omp simd reduction(|:odd)
        for (size_t j = 0; j < cols; j++) {
            float a = xr[j] + b[j];
            o[j] = RELU(a);
            odd |= !(fabsf(a) <= FLT_MAX);
        }
    }
    return odd;
}

/* One Adam update (scg.optim.Adam.step), in the order of numpy's in-place passes there, so the
   result is the same to the bit:
     g' = g + wd p (when wd != 0)
     m = m b1 + g' c1            c1 = 1 - b1
     v = v b2 + (g' g') c2       c2 = 1 - b2
     p = p - (m / (sqrt(v) + eps_hat)) step
   with the bias corrections folded into step and eps_hat by the caller. */
#define ADAM(NAME, T, SQRT)                                                                        \
void NAME(T *restrict p, const T *restrict g, T *restrict m, T *restrict v, size_t n,             \
          T b1, T c1, T b2, T c2, T step, T eps_hat, T wd) {                                      \
    if (wd != 0) {                                                                                 \
        _Pragma("omp simd")                                                                        \
        for (size_t i = 0; i < n; i++) {                                                           \
            T gi = g[i] + wd * p[i];                                                               \
            T mi = m[i] * b1 + gi * c1, vi = v[i] * b2 + (gi * gi) * c2;                           \
            m[i] = mi; v[i] = vi;                                                                  \
            p[i] = p[i] - (mi / (SQRT(vi) + eps_hat)) * step;                                      \
        }                                                                                          \
    } else {                                                                                       \
        _Pragma("omp simd")                                                                        \
        for (size_t i = 0; i < n; i++) {                                                           \
            T gi = g[i];                                                                           \
            T mi = m[i] * b1 + gi * c1, vi = v[i] * b2 + (gi * gi) * c2;                           \
            m[i] = mi; v[i] = vi;                                                                  \
            p[i] = p[i] - (mi / (SQRT(vi) + eps_hat)) * step;                                      \
        }                                                                                          \
    }                                                                                              \
}
ADAM(adam_f32, float, sqrtf)
ADAM(adam_f64, double, sqrt)

/* Whole-array tests for the validation checks (observed data with a NaN, logits that are not all
   finite, a Bernoulli value that is not 0 or 1): one read pass where numpy writes a boolean array
   and reads it back, and no early exit (the checks pass in the common case, and a branch per
   element would stop the vector loop). Each returns 1 if some element fails the test. */
#define TEST(NAME, T, FAILS)                                                                       \
int NAME(const T *restrict x, size_t n) {                                                         \
    int bad = 0;                                                                                   \
    _Pragma("omp simd reduction(|:bad)")                                                           \
    for (size_t i = 0; i < n; i++) { T a = x[i]; bad |= (FAILS); }                                 \
    return bad;                                                                                    \
}
TEST(any_nan_f32, float, a != a)
TEST(any_nan_f64, double, a != a)
TEST(any_nonfinite_f32, float, !(fabsf(a) <= FLT_MAX))
TEST(any_nonfinite_f64, double, !(fabs(a) <= DBL_MAX))
TEST(any_nonbinary_f32, float, (a != 0.0f) & (a != 1.0f))
TEST(any_nonbinary_f64, double, (a != 0.0) & (a != 1.0))
