// The fused mixed activation on CPU: pure math over a block of a row, no XLA types.
//
// x is viewed as rows of C columns; weights are [C, K] (a per-layer slot broadcasts its
// [K] weights over the columns). For a block of columns [c0, c0 + n) of one row the kernel
// computes, candidate by candidate, vectorized loops over the block that stay in L1:
//
//   forward:    y_c  = sum_k w_ck f_k(x_c)
//   backward:   dx_c = g_c sum_k w_ck f_k'(x_c),   dw_ck += g_c f_k(x_c)
//   curvature:  the backward pass's VJP, for exact second-order hypergradients
//
// Subexpressions shared by candidates (e = exp(-|x|), the sigmoid, tanh, sin and cos) are
// computed once per block. The formulas are those of actsearch/fused.py.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace actsearch {

// Candidate ids; the order is the one of ACTSEARCH_KERNEL_NAMES in actsearch/kernels/__init__.py.
enum Cand : int32_t {
  kIdentity = 0, kRelu, kLeakyRelu, kElu, kGelu, kSilu, kSoftplus, kTanh, kSigmoid, kSin,
  kCos, kGaussian, kSquare, kAbs, kRelu6, kHardTanh, kSoftsign, kNumCands
};

constexpr int kBlock = 256;  // columns per block: a block's buffers fit in L1

// The scalar math is always inlined: a loop that calls it out of line is not vectorized
// (the compiler's inlining budget runs out in the large per-candidate switches otherwise).
#define ACTSEARCH_MATH static inline __attribute__((always_inline))

ACTSEARCH_MATH float bits_to_float(int32_t i) {
  float f;
  std::memcpy(&f, &i, sizeof f);
  return f;
}

// exp(y) for y <= 0 (Cephes' expf: reduction by ln 2 in two parts, degree-6 polynomial);
// 0 below -87, where the result would be denormal (XLA:CPU flushes those to 0 too).
ACTSEARCH_MATH float exp_nonpos(float y) {
  bool underflow = y < -87.0f;
  y = underflow ? -87.0f : y;
  float n = std::nearbyint(y * 1.44269504088896341f);
  float r = y - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float z = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * z + r + 1.0f;
  float result = p * bits_to_float((static_cast<int32_t>(n) + 127) << 23);
  return underflow ? 0.0f : result;
}

// log(1 + e) for e in [0, 1], as 2 atanh(e / (2 + e)) (odd series to s^13).
ACTSEARCH_MATH float log1p_unit(float e) {
  float s = e / (2.0f + e);
  float z = s * s;
  float p = 1.0f / 13;
  p = p * z + 1.0f / 11;
  p = p * z + 1.0f / 9;
  p = p * z + 1.0f / 7;
  p = p * z + 1.0f / 5;
  p = p * z + 1.0f / 3;
  p = p * z + 1.0f;
  return 2.0f * s * p;
}

// sin and cos from one Cody-Waite reduction by pi/2 (Cephes' sinf/cosf polynomials).
ACTSEARCH_MATH void sin_cos(float x, float* sn, float* cs) {
  float k = std::nearbyint(x * 0.6366197723675814f);
  float r = ((x - k * 1.5703125f) - k * 4.837512969970703125e-4f) - k * 7.54978995489188216e-8f;
  float z = r * r;
  float s = r + r * z * ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f);
  float c = 1.0f - 0.5f * z +
            z * z * ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f);
  int32_t q = static_cast<int32_t>(k) & 3;
  float s0 = (q & 1) ? c : s;
  float c0 = (q & 1) ? s : c;
  *sn = (q & 2) ? -s0 : s0;
  *cs = ((q + 1) & 2) ? -c0 : c0;
}

// sign(x), NaN for NaN (x * 0 keeps it).
ACTSEARCH_MATH float sign(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : x * 0.0f); }

struct Needs {
  bool e = false, sigmoid = false, tanh = false, sincos = false;
};

static inline Needs needs_of(const int32_t* ids, int k) {
  Needs n;
  for (int j = 0; j < k; ++j) {
    switch (ids[j]) {
      case kElu: n.e = true; break;
      case kSilu: case kSoftplus: case kSigmoid: n.e = n.sigmoid = true; break;
      case kTanh: n.e = n.tanh = true; break;
      case kSin: case kCos: n.sincos = true; break;
      default: break;
    }
  }
  return n;
}

// Shared subexpressions of a block.
struct Shared {
  alignas(64) float e[kBlock];
  alignas(64) float sig[kBlock];
  alignas(64) float th[kBlock];
  alignas(64) float sn[kBlock];
  alignas(64) float cs[kBlock];

  void compute(const Needs& need, const float* __restrict x, int n) {
    if (need.e) {
#pragma omp simd
      for (int i = 0; i < n; ++i) e[i] = exp_nonpos(-std::fabs(x[i]));
    }
    if (need.sigmoid) {
#pragma omp simd
      for (int i = 0; i < n; ++i) {
        float r = 1.0f / (1.0f + e[i]);
        sig[i] = x[i] >= 0.0f ? r : e[i] * r;
      }
    }
    if (need.tanh) {
#pragma omp simd
      for (int i = 0; i < n; ++i) {
        float e2 = e[i] * e[i];
        th[i] = sign(x[i]) * (1.0f - e2) / (1.0f + e2);
      }
    }
    if (need.sincos) {
#pragma omp simd
      for (int i = 0; i < n; ++i) sin_cos(x[i], &sn[i], &cs[i]);
    }
  }
};

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluA = 0.044715f;

// The value f, slope d and curvature d2 of each candidate at element i of a block (x is
// x[i]; sh holds the block's shared subexpressions). Each loop below instantiates all of
// them and keeps what it uses: the compiler drops the rest.
#define ACTSEARCH_CANDIDATES(X)                                                              \
  X(kIdentity, f = x; d = 1.0f; d2 = 0.0f;)                                                  \
  X(kRelu, f = x < 0.0f ? 0.0f : x; d = x > 0.0f ? 1.0f : 0.0f; d2 = 0.0f;)                  \
  X(kLeakyRelu, f = x >= 0.0f ? x : 0.01f * x; d = x >= 0.0f ? 1.0f : 0.01f; d2 = 0.0f;)     \
  X(kElu, f = x > 0.0f ? x : sh.e[i] - 1.0f; d = x > 0.0f ? 1.0f : sh.e[i]; d2 = x > 0.0f ? 0.0f : sh.e[i];) \
  X(kGelu, {                                                                                 \
    float x2 = x * x;                                                                        \
    float u = kSqrt2OverPi * x * (1.0f + kGeluA * x2);                                       \
    float eu = exp_nonpos(-2.0f * std::fabs(u));                                             \
    float t = sign(u) * (1.0f - eu) / (1.0f + eu);                                           \
    float du = kSqrt2OverPi * (1.0f + 3.0f * kGeluA * x2);                                   \
    float sech2 = 1.0f - t * t;                                                              \
    f = 0.5f * x * (1.0f + t);                                                               \
    d = 0.5f * (1.0f + t) + 0.5f * x * sech2 * du;                                           \
    d2 = sech2 * du + 0.5f * x * sech2 * (6.0f * kGeluA * kSqrt2OverPi * x - 2.0f * t * du * du); \
  })                                                                                         \
  X(kSilu, {                                                                                 \
    float s = sh.sig[i];                                                                     \
    float ds = s * (1.0f - s);                                                               \
    f = x * s;                                                                               \
    d = s + x * ds;                                                                          \
    d2 = ds * (2.0f + x * (1.0f - 2.0f * s));                                                \
  })                                                                                         \
  X(kSoftplus, f = (x < 0.0f ? 0.0f : x) + log1p_unit(sh.e[i]); d = sh.sig[i];               \
    d2 = sh.sig[i] * (1.0f - sh.sig[i]);)                                                    \
  X(kTanh, f = sh.th[i]; d = 1.0f - sh.th[i] * sh.th[i]; d2 = -2.0f * sh.th[i] * d;)         \
  X(kSigmoid, f = sh.sig[i]; d = sh.sig[i] * (1.0f - sh.sig[i]);                             \
    d2 = d * (1.0f - 2.0f * sh.sig[i]);)                                                     \
  X(kSin, f = sh.sn[i]; d = sh.cs[i]; d2 = -sh.sn[i];)                                       \
  X(kCos, f = sh.cs[i]; d = -sh.sn[i]; d2 = -sh.cs[i];)                                      \
  X(kGaussian, {                                                                             \
    float gx = exp_nonpos(-x * x);                                                           \
    f = gx;                                                                                  \
    d = -2.0f * x * gx;                                                                      \
    d2 = (4.0f * x * x - 2.0f) * gx;                                                         \
  })                                                                                         \
  X(kSquare, f = x * x; d = 2.0f * x; d2 = 2.0f;)                                            \
  X(kAbs, f = std::fabs(x); d = sign(x); d2 = 0.0f;)                                         \
  X(kRelu6, f = x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);                                     \
    d = (x > 0.0f && x < 6.0f) ? 1.0f : 0.0f; d2 = 0.0f;)                                    \
  X(kHardTanh, f = x < -1.0f ? -1.0f : (x > 1.0f ? 1.0f : x);                                \
    d = (x > -1.0f && x < 1.0f) ? 1.0f : 0.0f; d2 = 0.0f;)                                  \
  X(kSoftsign, {                                                                             \
    float q = 1.0f + std::fabs(x);                                                           \
    f = x / q;                                                                               \
    d = 1.0f / (q * q);                                                                      \
    d2 = -2.0f * sign(x) * d / q;                                                            \
  })

// One candidate's loop over a block: the statement ACTSEARCH_STEP (which uses f, d and d2 at
// element i), defined where the loop is used, for i in [0, n).
#define ACTSEARCH_TERM_LOOP()                                 \
  switch (id) {                                               \
    ACTSEARCH_CANDIDATES(ACTSEARCH_TERM_CASE)                 \
    default: break;                                           \
  }
#define ACTSEARCH_TERM_CASE(ID, BODY)                         \
  case ID:                                                    \
    _Pragma("omp simd") for (int i = 0; i < n; ++i) {         \
      float x = xs[i], f, d, d2;                              \
      BODY;                                                   \
      (void)f, (void)d, (void)d2;                             \
      ACTSEARCH_STEP                                          \
    }                                                         \
    break;

// y[0:n] += w[0:n] * f(x[0:n]) for one candidate.
static inline void forward_term(int32_t id, const float* __restrict xs, const float* __restrict w,
                                const Shared& sh, float* __restrict y, int n) {
#define ACTSEARCH_STEP y[i] += w[i] * f;
  ACTSEARCH_TERM_LOOP()
#undef ACTSEARCH_STEP
}

// s[0:n] += w[0:n] * f'(x[0:n]); with kDw, also dw[0:n] += g[0:n] * f(x[0:n]).
template <bool kDw>
static inline void backward_term(int32_t id, const float* __restrict xs,
                                 const float* __restrict g, const float* __restrict w,
                                 const Shared& sh, float* __restrict s,
                                 float* __restrict dw, int n) {
  if constexpr (kDw) {
#define ACTSEARCH_STEP s[i] += w[i] * d; dw[i] += g[i] * f;
    ACTSEARCH_TERM_LOOP()
#undef ACTSEARCH_STEP
  } else {
#define ACTSEARCH_STEP s[i] += w[i] * d;
    ACTSEARCH_TERM_LOOP()
#undef ACTSEARCH_STEP
  }
}

// The sums of the curvature pass for one candidate: s2 += w f'', s1 += w f', wbar += a g f',
// and with kB (a cotangent b of the weights): sb1 += b f', sb0 += b f.
template <bool kB>
static inline void curvature_term(int32_t id, const float* __restrict xs,
                                  const float* __restrict ag, const float* __restrict w,
                                  const float* __restrict b, const Shared& sh,
                                  float* __restrict s2, float* __restrict s1,
                                  float* __restrict sb1, float* __restrict sb0,
                                  float* __restrict wbar, int n) {
  if constexpr (kB) {
#define ACTSEARCH_STEP \
  s2[i] += w[i] * d2; s1[i] += w[i] * d; wbar[i] += ag[i] * d; sb1[i] += b[i] * d; sb0[i] += b[i] * f;
    ACTSEARCH_TERM_LOOP()
#undef ACTSEARCH_STEP
  } else {
#define ACTSEARCH_STEP s2[i] += w[i] * d2; s1[i] += w[i] * d; wbar[i] += ag[i] * d;
    ACTSEARCH_TERM_LOOP()
#undef ACTSEARCH_STEP
  }
}

// Calls block(at, c0, n) for every block of columns [c0, c0 + n) of rows [r0, r1), where
// at is the block's offset in the row-major array.
template <typename Block>
static inline void for_blocks(int64_t cols, int64_t r0, int64_t r1, Block block) {
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t c0 = 0; c0 < cols; c0 += kBlock) {
      block(r * cols + c0, c0, static_cast<int>(cols - c0 < kBlock ? cols - c0 : kBlock));
    }
  }
}

// Rows [r0, r1) of x [rows, C]: y = sum_k w_k f_k(x). wt is the weights transposed, [K, C].
static inline void forward_rows(const float* x, const float* wt, const int32_t* ids, int k,
                                int64_t cols, int64_t r0, int64_t r1, float* y) {
  Needs need = needs_of(ids, k);
  Shared sh;
  for_blocks(cols, r0, r1, [&](int64_t at, int64_t c0, int n) {
    sh.compute(need, x + at, n);
    for (int i = 0; i < n; ++i) y[at + i] = 0.0f;
    for (int j = 0; j < k; ++j) forward_term(ids[j], x + at, wt + j * cols + c0, sh, y + at, n);
  });
}

// Rows [r0, r1): dx = g * sum_k w_k f_k'(x); with kDw, also dwt ([K, C]) += g f_k(x) summed
// over the rows.
template <bool kDw>
static inline void backward_rows(const float* x, const float* g, const float* wt,
                                 const int32_t* ids, int k, int64_t cols, int64_t r0,
                                 int64_t r1, float* dx, float* dwt) {
  Needs need = needs_of(ids, k);
  Shared sh;
  alignas(64) float s[kBlock];
  for_blocks(cols, r0, r1, [&](int64_t at, int64_t c0, int n) {
    sh.compute(need, x + at, n);
    for (int i = 0; i < n; ++i) s[i] = 0.0f;
    for (int j = 0; j < k; ++j) {
      backward_term<kDw>(ids[j], x + at, g + at, wt + j * cols + c0, sh, s,
                         kDw ? dwt + j * cols + c0 : nullptr, n);
    }
#pragma omp simd
    for (int i = 0; i < n; ++i) dx[at + i] = g[at + i] * s[i];
  });
}

// Rows [r0, r1) of the backward pass's VJP, with cotangents a (of dx) and, with kB, bt
// ([K, C], of the weights):
//   xbar = a g sum_k w_k f_k'' + g sum_k b_k f_k',   gbar = a sum_k w_k f_k' + sum_k b_k f_k,
//   wbart_k += a g f_k'  summed over the rows.
template <bool kB>
static inline void curvature_rows(const float* x, const float* g, const float* a,
                                  const float* wt, const float* bt, const int32_t* ids, int k,
                                  int64_t cols, int64_t r0, int64_t r1, float* xbar,
                                  float* gbar, float* wbart) {
  Needs need = needs_of(ids, k);
  Shared sh;
  alignas(64) float ag[kBlock], s2[kBlock], s1[kBlock], sb1[kBlock], sb0[kBlock];
  for_blocks(cols, r0, r1, [&](int64_t at, int64_t c0, int n) {
    sh.compute(need, x + at, n);
    for (int i = 0; i < n; ++i) {
      ag[i] = a[at + i] * g[at + i];
      s2[i] = s1[i] = sb1[i] = sb0[i] = 0.0f;
    }
    for (int j = 0; j < k; ++j) {
      curvature_term<kB>(ids[j], x + at, ag, wt + j * cols + c0, kB ? bt + j * cols + c0 : nullptr,
                         sh, s2, s1, sb1, sb0, wbart + j * cols + c0, n);
    }
#pragma omp simd
    for (int i = 0; i < n; ++i) {
      xbar[at + i] = ag[i] * s2[i] + g[at + i] * sb1[i];
      gbar[at + i] = a[at + i] * s1[i] + sb0[i];
    }
  });
}

}  // namespace actsearch
