// XLA FFI handlers for the fused mixed activation on CPU (the math is in mixture_core.h).
//
// Every handler takes x as [rows, C] float32 and the mixture weights transposed, [K, C],
// with the candidate ids as the attribute "ids". Rows are split into units that the
// calling thread and XLA's intra-op thread pool take from a shared counter; the caller
// also runs units itself, so the call finishes even if no pool thread is free.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "mixture_core.h"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

using Ids = ffi::Span<const int32_t>;

struct Units {
  int64_t count = 0;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

// Runs body(unit) for unit in [0, count), on the caller and up to count - 1 pool tasks.
// State is shared: a task that starts after the call has returned finds no unit left.
template <typename Body>
void run_units(ffi::ThreadPool& pool, int64_t count, Body body) {
  if (count <= 1) {
    if (count == 1) body(0);
    return;
  }
  auto state = std::make_shared<Units>();
  state->count = count;
  auto work = [state, body]() {
    for (int64_t u; (u = state->next.fetch_add(1)) < state->count;) {
      body(u);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  int64_t helpers = std::min<int64_t>(count, pool.num_threads()) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule(decltype(work)(work));
  work();
  while (state->done.load(std::memory_order_acquire) < count) std::this_thread::yield();
}

int64_t unit_count(ffi::ThreadPool& pool, int64_t rows, int64_t cols) {
  // Units of at least 64 Ki elements, so scheduling costs little against the work.
  int64_t by_size = std::max<int64_t>(1, rows * cols / (1 << 16));
  int64_t threads = std::max<int64_t>(1, pool.num_threads());
  return std::min({rows, by_size, 2 * threads});
}

ffi::Error check(const ffi::Buffer<ffi::F32>& x, const ffi::Buffer<ffi::F32>& wt, Ids ids) {
  auto xd = x.dimensions();
  auto wd = wt.dimensions();
  if (xd.size() != 2 || wd.size() != 2 || wd[1] != xd[1] ||
      wd[0] != static_cast<int64_t>(ids.size())) {
    return ffi::Error::InvalidArgument("actsearch mixture: x must be [rows, C], wt [K, C]");
  }
  for (int32_t id : ids) {
    if (id < 0 || id >= actsearch::kNumCands) {
      return ffi::Error::InvalidArgument("actsearch mixture: unknown candidate id");
    }
  }
  return ffi::Error::Success();
}

// Runs body(r0, r1, sums) over units of rows; with out ([K, C]) not null, each unit adds its
// rows' sums into its own [K, C] slice (sums), and the slices are added into out at the end;
// with out null, sums is null.
template <typename Body>
void run_summing(ffi::ThreadPool& pool, int64_t rows, int64_t cols, int k, float* out, Body body) {
  int64_t units = unit_count(pool, rows, cols);
  std::vector<float> partial(out ? units * k * cols : 0, 0.0f);
  float* pp = partial.data();
  run_units(pool, units, [=](int64_t u) {
    body(rows * u / units, rows * (u + 1) / units, out ? pp + u * k * cols : nullptr);
  });
  if (out) {
    std::fill(out, out + k * cols, 0.0f);
    for (int64_t u = 0; u < units; ++u) {
      for (int64_t i = 0; i < k * cols; ++i) out[i] += pp[u * k * cols + i];
    }
  }
}

// The candidates that take part in a pass that sums w_k terms only (forward, dx): those with a
// weight other than 0 in some column. A pinned slot (weight 1 for one candidate, 0 for the
// others, as the shortlist trains) then costs one candidate, not K; 0 * f_k adds nothing
// where f_k is finite.
struct Active {
  std::vector<int32_t> ids;
  std::vector<float> wt;  // [k, C], the rows of the candidates in ids
};

Active active(const int32_t* ids, int k, const float* wt, int64_t cols) {
  Active a;
  for (int j = 0; j < k; ++j) {
    const float* row = wt + j * cols;
    if (std::any_of(row, row + cols, [](float v) { return v != 0.0f; })) {
      a.ids.push_back(ids[j]);
      a.wt.insert(a.wt.end(), row, row + cols);
    }
  }
  return a;
}

ffi::Error MixForward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> wt,
                      Ids ids, ffi::ResultBuffer<ffi::F32> y) {
  if (ffi::Error e = check(x, wt, ids); e.failure()) return e;
  int64_t rows = x.dimensions()[0], cols = x.dimensions()[1];
  const float* xp = x.typed_data();
  const float* wp = wt.typed_data();
  float* yp = y->typed_data();
  Active on = active(ids.begin(), static_cast<int>(ids.size()), wp, cols);
  const int32_t* idp = on.ids.data();
  const float* onp = on.wt.data();
  int k = static_cast<int>(on.ids.size());
  run_summing(pool, rows, cols, k, nullptr, [=](int64_t r0, int64_t r1, float*) {
    actsearch::forward_rows(xp, onp, idp, k, cols, r0, r1, yp);
  });
  return ffi::Error::Success();
}

ffi::Error check_like_x(const ffi::Buffer<ffi::F32>& x, const ffi::Buffer<ffi::F32>& other) {
  auto xd = x.dimensions(), od = other.dimensions();
  if (od.size() != 2 || od[0] != xd[0] || od[1] != xd[1]) {
    return ffi::Error::InvalidArgument("actsearch mixture: operands must have the shape of x");
  }
  return ffi::Error::Success();
}

// With dwt: the full backward pass (dx and the weights' gradient); without: dx alone.
ffi::Error Backward(ffi::ThreadPool& pool, ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::F32>& g,
                    ffi::Buffer<ffi::F32>& wt, Ids ids, float* dxp, float* dwtp) {
  if (ffi::Error e = check(x, wt, ids); e.failure()) return e;
  if (ffi::Error e = check_like_x(x, g); e.failure()) return e;
  int64_t rows = x.dimensions()[0], cols = x.dimensions()[1];
  int k = static_cast<int>(ids.size());
  const float* xp = x.typed_data();
  const float* gp = g.typed_data();
  const float* wp = wt.typed_data();
  const int32_t* idp = ids.begin();
  Active on;
  if (!dwtp) {  // dx alone: only the candidates with a weight
    on = active(idp, k, wp, cols);
    idp = on.ids.data();
    wp = on.wt.data();
    k = static_cast<int>(on.ids.size());
  }
  run_summing(pool, rows, cols, k, dwtp, [=](int64_t r0, int64_t r1, float* sums) {
    if (sums) {
      actsearch::backward_rows<true>(xp, gp, wp, idp, k, cols, r0, r1, dxp, sums);
    } else {
      actsearch::backward_rows<false>(xp, gp, wp, idp, k, cols, r0, r1, dxp, nullptr);
    }
  });
  return ffi::Error::Success();
}

ffi::Error MixBackward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                       ffi::Buffer<ffi::F32> wt, Ids ids, ffi::ResultBuffer<ffi::F32> dx,
                       ffi::ResultBuffer<ffi::F32> dwt) {
  return Backward(pool, x, g, wt, ids, dx->typed_data(), dwt->typed_data());
}

ffi::Error MixDx(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                 ffi::Buffer<ffi::F32> wt, Ids ids, ffi::ResultBuffer<ffi::F32> dx) {
  return Backward(pool, x, g, wt, ids, dx->typed_data(), nullptr);
}

// The VJP of a backward pass; bt (the weights' cotangent, transposed) is null for dx alone.
ffi::Error Curvature(ffi::ThreadPool& pool, ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::F32>& g,
                     ffi::Buffer<ffi::F32>& a, ffi::Buffer<ffi::F32>& wt, const float* btp,
                     Ids ids, ffi::ResultBuffer<ffi::F32>& xbar, ffi::ResultBuffer<ffi::F32>& gbar,
                     ffi::ResultBuffer<ffi::F32>& wbart) {
  if (ffi::Error e = check(x, wt, ids); e.failure()) return e;
  if (ffi::Error e = check_like_x(x, g); e.failure()) return e;
  if (ffi::Error e = check_like_x(x, a); e.failure()) return e;
  int64_t rows = x.dimensions()[0], cols = x.dimensions()[1];
  int k = static_cast<int>(ids.size());
  const float *xp = x.typed_data(), *gp = g.typed_data(), *ap = a.typed_data();
  const float* wp = wt.typed_data();
  const int32_t* idp = ids.begin();
  float *xbp = xbar->typed_data(), *gbp = gbar->typed_data();
  run_summing(pool, rows, cols, k, wbart->typed_data(), [=](int64_t r0, int64_t r1, float* sums) {
    if (btp) {
      actsearch::curvature_rows<true>(xp, gp, ap, wp, btp, idp, k, cols, r0, r1, xbp, gbp, sums);
    } else {
      actsearch::curvature_rows<false>(xp, gp, ap, wp, nullptr, idp, k, cols, r0, r1, xbp, gbp,
                                       sums);
    }
  });
  return ffi::Error::Success();
}

ffi::Error MixCurvature(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                        ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> wt,
                        ffi::Buffer<ffi::F32> bt, Ids ids, ffi::ResultBuffer<ffi::F32> xbar,
                        ffi::ResultBuffer<ffi::F32> gbar, ffi::ResultBuffer<ffi::F32> wbart) {
  auto wd = wt.dimensions(), bd = bt.dimensions();
  if (bd.size() != 2 || bd[0] != wd[0] || bd[1] != wd[1]) {
    return ffi::Error::InvalidArgument("actsearch mixture: bt must have the shape of wt");
  }
  return Curvature(pool, x, g, a, wt, bt.typed_data(), ids, xbar, gbar, wbart);
}

ffi::Error MixDxCurvature(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> g,
                          ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> wt, Ids ids,
                          ffi::ResultBuffer<ffi::F32> xbar, ffi::ResultBuffer<ffi::F32> gbar,
                          ffi::ResultBuffer<ffi::F32> wbart) {
  return Curvature(pool, x, g, a, wt, nullptr, ids, xbar, gbar, wbart);
}

}  // namespace

using F32Buffer = ffi::Buffer<ffi::F32>;

// The thread pool and three arrays: the start of every handler's arguments.
static auto BindThreeArrays() {
  return ffi::Ffi::Bind().Ctx<ffi::ThreadPool>().Arg<F32Buffer>().Arg<F32Buffer>().Arg<
      F32Buffer>();
}

// Forward (x, wt) and the backward passes (x, g, wt).
XLA_FFI_DEFINE_HANDLER_SYMBOL(ActsearchMixForward, MixForward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32Buffer>()
                                  .Arg<F32Buffer>()
                                  .Attr<Ids>("ids")
                                  .Ret<F32Buffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(ActsearchMixBackward, MixBackward,
                              BindThreeArrays().Attr<Ids>("ids").Ret<F32Buffer>().Ret<
                                  F32Buffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(ActsearchMixDx, MixDx,
                              BindThreeArrays().Attr<Ids>("ids").Ret<F32Buffer>());

// The curvature passes: x, g, a, wt (and bt); xbar, gbar, wbart.
XLA_FFI_DEFINE_HANDLER_SYMBOL(ActsearchMixCurvature, MixCurvature,
                              BindThreeArrays()
                                  .Arg<F32Buffer>()
                                  .Arg<F32Buffer>()
                                  .Attr<Ids>("ids")
                                  .Ret<F32Buffer>()
                                  .Ret<F32Buffer>()
                                  .Ret<F32Buffer>());
XLA_FFI_DEFINE_HANDLER_SYMBOL(ActsearchMixDxCurvature, MixDxCurvature,
                              BindThreeArrays()
                                  .Arg<F32Buffer>()
                                  .Attr<Ids>("ids")
                                  .Ret<F32Buffer>()
                                  .Ret<F32Buffer>()
                                  .Ret<F32Buffer>());
