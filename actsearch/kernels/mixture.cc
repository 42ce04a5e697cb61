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

ffi::Error MixForward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> wt,
                      Ids ids, ffi::ResultBuffer<ffi::F32> y) {
  if (ffi::Error e = check(x, wt, ids); e.failure()) return e;
  int64_t rows = x.dimensions()[0], cols = x.dimensions()[1];
  int64_t units = unit_count(pool, rows, cols);
  const float* xp = x.typed_data();
  const float* wp = wt.typed_data();
  float* yp = y->typed_data();
  const int32_t* idp = ids.begin();
  int k = static_cast<int>(ids.size());
  run_units(pool, units, [=](int64_t u) {
    actsearch::forward_rows(xp, wp, idp, k, cols, rows * u / units, rows * (u + 1) / units, yp);
  });
  return ffi::Error::Success();
}

// With dwt: the full backward pass (dx and the weights' gradient); without: dx alone.
ffi::Error Backward(ffi::ThreadPool& pool, ffi::Buffer<ffi::F32>& x, ffi::Buffer<ffi::F32>& g,
                    ffi::Buffer<ffi::F32>& wt, Ids ids, float* dxp, float* dwtp) {
  if (ffi::Error e = check(x, wt, ids); e.failure()) return e;
  if (g.dimensions().size() != 2 || g.dimensions()[0] != x.dimensions()[0] ||
      g.dimensions()[1] != x.dimensions()[1]) {
    return ffi::Error::InvalidArgument("actsearch mixture: g must have the shape of x");
  }
  int64_t rows = x.dimensions()[0], cols = x.dimensions()[1];
  int64_t units = unit_count(pool, rows, cols);
  int k = static_cast<int>(ids.size());
  // Each unit sums its rows into its own [K, C] slice; the slices are added at the end.
  std::vector<float> partial(dwtp ? units * k * cols : 0, 0.0f);
  const float* xp = x.typed_data();
  const float* gp = g.typed_data();
  const float* wp = wt.typed_data();
  const int32_t* idp = ids.begin();
  float* pp = partial.data();
  run_units(pool, units, [=](int64_t u) {
    int64_t r0 = rows * u / units, r1 = rows * (u + 1) / units;
    if (dwtp) {
      actsearch::backward_rows<true>(xp, gp, wp, idp, k, cols, r0, r1, dxp, pp + u * k * cols);
    } else {
      actsearch::backward_rows<false>(xp, gp, wp, idp, k, cols, r0, r1, dxp, nullptr);
    }
  });
  if (dwtp) {
    std::fill(dwtp, dwtp + k * cols, 0.0f);
    for (int64_t u = 0; u < units; ++u) {
      const float* src = pp + u * k * cols;
      for (int64_t i = 0; i < k * cols; ++i) dwtp[i] += src[i];
    }
  }
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

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(ActsearchMixForward, MixForward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Attr<Ids>("ids")
                                  .Ret<ffi::Buffer<ffi::F32>>());

// x, g, the transposed weights and the ids: the arguments of both backward handlers.
static auto BackwardBinding() {
  return ffi::Ffi::Bind()
      .Ctx<ffi::ThreadPool>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Arg<ffi::Buffer<ffi::F32>>()
      .Attr<Ids>("ids");
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(ActsearchMixBackward, MixBackward,
                              BackwardBinding().Ret<ffi::Buffer<ffi::F32>>().Ret<
                                  ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(ActsearchMixDx, MixDx,
                              BackwardBinding().Ret<ffi::Buffer<ffi::F32>>());
