// rlvr_jax CPU kernel: y[M, N] = x[M, K] @ W[K, N] in float32 with W pre-packed into column panels.
//
// Why: XLA's CPU dot runs the decode step's small-M products (M = rows being sampled, 1..64) at a
// third to a half of this CPU's FMA peak; a register-blocked AVX2 kernel over weights packed once per
// sampler call streams each weight panel once from memory and keeps it in L1/L2 for every row.
//
// Packed layout (see cpu_gemm.py `pack`): full panels of 24 columns, then tail panels of 8, each panel
// stored [K][width] contiguously, panels one after another; the buffer keeps the logical shape [K, N].
// Work is split over XLA's intra-op thread pool by (row block, panel chunk); the calling thread takes
// chunks too, so a busy pool never stalls the call.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kRowBlock = 64;  // rows of x kept hot (L2) while a panel streams past them

// Accumulates one MR x (NV * 8) block of y over all of K. The accumulators are named scalars, not an
// array, so the compiler keeps all twelve in registers.
#define RLVR_ROW(i)                                                    \
  if constexpr (MR > i) {                                              \
    const __m256 a = _mm256_broadcast_ss(x + i * ldx + k);             \
    c##i##0 = _mm256_fmadd_ps(a, b0, c##i##0);                         \
    if constexpr (NV > 1) c##i##1 = _mm256_fmadd_ps(a, b1, c##i##1);   \
    if constexpr (NV > 2) c##i##2 = _mm256_fmadd_ps(a, b2, c##i##2);   \
  }
#define RLVR_STORE(i)                                                  \
  if constexpr (MR > i) {                                              \
    _mm256_storeu_ps(y + i * ldy, c##i##0);                            \
    if constexpr (NV > 1) _mm256_storeu_ps(y + i * ldy + 8, c##i##1);  \
    if constexpr (NV > 2) _mm256_storeu_ps(y + i * ldy + 16, c##i##2); \
  }

template <int MR, int NV>
inline void Tile(const float* __restrict x, int64_t ldx, const float* __restrict wp, int64_t K,
                 float* __restrict y, int64_t ldy) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
  for (int64_t k = 0; k < K; ++k) {
    const float* w = wp + k * NV * 8;
    const __m256 b0 = _mm256_loadu_ps(w);
    const __m256 b1 = NV > 1 ? _mm256_loadu_ps(w + 8) : b0;
    const __m256 b2 = NV > 2 ? _mm256_loadu_ps(w + 16) : b0;
    RLVR_ROW(0) RLVR_ROW(1) RLVR_ROW(2) RLVR_ROW(3)
  }
  RLVR_STORE(0) RLVR_STORE(1) RLVR_STORE(2) RLVR_STORE(3)
}

// Rows [r0, r1) of y for one panel of NV * 8 columns.
template <int NV>
void Panel(const float* x, int64_t r0, int64_t r1, int64_t K, const float* wp, float* y, int64_t N) {
  int64_t i = r0;
  for (; i + 4 <= r1; i += 4) Tile<4, NV>(x + i * K, K, wp, K, y + i * N, N);
  switch (r1 - i) {
    case 3: Tile<3, NV>(x + i * K, K, wp, K, y + i * N, N); break;
    case 2: Tile<2, NV>(x + i * K, K, wp, K, y + i * N, N); break;
    case 1: Tile<1, NV>(x + i * K, K, wp, K, y + i * N, N); break;
    default: break;
  }
}

// Runs fn(i) for i in [0, n) on the pool and the calling thread; returns when all are done.
template <typename F>
void ParallelFor(ffi::ThreadPool& pool, int64_t n, F fn) {
  struct Loop {
    F fn;
    int64_t n;
    std::atomic<int64_t> next{0}, done{0};
    explicit Loop(F f, int64_t n) : fn(std::move(f)), n(n) {}
    void Drain() {
      for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
        fn(i);
        done.fetch_add(1, std::memory_order_release);
      }
    }
  };
  auto loop = std::make_shared<Loop>(std::move(fn), n);
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  for (int64_t t = 1; t < std::min(threads, n); ++t) pool.Schedule([loop] { loop->Drain(); });
  loop->Drain();
  while (loop->done.load(std::memory_order_acquire) < n) _mm_pause();
}

struct Gemm {
  const float* x;
  const float* wp;
  float* y;
  int64_t M, K, N, full, panels, chunk, chunks_per_block;

  // Work unit u: rows [block * kRowBlock, +kRowBlock) of y for one chunk of panels.
  void Unit(int64_t u) const {
    const int64_t block = u / chunks_per_block, c = u % chunks_per_block;
    const int64_t r0 = block * kRowBlock, r1 = std::min(M, r0 + kRowBlock);
    const int64_t p1 = std::min(panels, (c + 1) * chunk);
    for (int64_t p = c * chunk; p < p1; ++p) {
      if (p < full) {
        Panel<3>(x, r0, r1, K, wp + p * K * 24, y + p * 24, N);
      } else {
        const int64_t q = p - full;
        Panel<1>(x, r0, r1, K, wp + full * K * 24 + q * K * 8, y + full * 24 + q * 8, N);
      }
    }
  }
};

ffi::Error PackedGemm(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w_packed,
                      ffi::ResultBuffer<ffi::F32> y) {
  const auto wd = w_packed.dimensions();
  if (wd.size() != 2 || wd[1] % 8 != 0) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "rlvr_packed_gemm: packed weight must be [K, N], N % 8 == 0");
  }
  const int64_t K = wd[0], N = wd[1];
  if (K == 0 || x.element_count() % K != 0) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument, "rlvr_packed_gemm: x's last dimension must equal K");
  }
  Gemm g;
  g.x = x.typed_data();
  g.wp = w_packed.typed_data();
  g.y = y->typed_data();
  g.M = x.element_count() / K;
  g.K = K;
  g.N = N;
  g.full = N / 24;
  g.panels = g.full + (N % 24) / 8;
  if (g.M == 0) return ffi::Error::Success();
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t blocks = (g.M + kRowBlock - 1) / kRowBlock;
  // about 8 units per thread, so uneven progress (a shared core) evens out
  const int64_t per_block = std::max<int64_t>(1, (threads * 8 + blocks - 1) / blocks);
  g.chunk = std::max<int64_t>(1, (g.panels + per_block - 1) / per_block);
  g.chunks_per_block = (g.panels + g.chunk - 1) / g.chunk;
  ParallelFor(pool, blocks * g.chunks_per_block, [g](int64_t u) { g.Unit(u); });
  return ffi::Error::Success();
}

// W [K, N] (or, transposed, W^T stored [N, K]) -> the packed panel layout of PackedGemm.
ffi::Error Pack(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> out, bool transposed) {
  const auto wd = w.dimensions();
  if (wd.size() != 2) return ffi::Error(ffi::ErrorCode::kInvalidArgument, "rlvr_pack: weight must be 2-D");
  const int64_t K = transposed ? wd[1] : wd[0], N = transposed ? wd[0] : wd[1];
  if (N % 8 != 0) return ffi::Error(ffi::ErrorCode::kInvalidArgument, "rlvr_pack: N must be a multiple of 8");
  const float* src = w.typed_data();
  float* dst = out->typed_data();
  const int64_t full = N / 24, panels = full + (N % 24) / 8;
  ParallelFor(pool, panels, [=](int64_t p) {
    const int64_t width = p < full ? 24 : 8;
    const int64_t col = p < full ? p * 24 : full * 24 + (p - full) * 8;
    float* o = dst + col * K;  // panels before this one hold col * K values
    if (!transposed) {
      for (int64_t k = 0; k < K; ++k) std::memcpy(o + k * width, src + k * N + col, width * sizeof(float));
    } else {
      for (int64_t j = 0; j < width; ++j) {
        const float* row = src + (col + j) * K;
        for (int64_t k = 0; k < K; ++k) o[k * width + j] = row[k];
      }
    }
  });
  return ffi::Error::Success();
}

// One decode step of grouped-query attention over a KV cache: for every row b and query head h (kv head
// h / G), out = softmax(q . K[s] * scale over the slots s with mask[b, s]) @ V. Slots outside the mask
// get probability 0 as in the XLA path (a row with no valid slot gets the uniform average, as there).
// Work unit: one (row, kv head), whose K/V slabs [S, D] are read once for its G query heads.
ffi::Error DecodeAttention(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k_cache,
                           ffi::Buffer<ffi::F32> v_cache, ffi::Buffer<ffi::PRED> mask, ffi::ResultBuffer<ffi::F32> out,
                           float scale) {
  const auto qd = q.dimensions(), kd = k_cache.dimensions();
  if (qd.size() != 3 || kd.size() != 4 || kd[3] != qd[2] || qd[2] % 8 != 0 || qd[1] % kd[1] != 0 || kd[0] != qd[0]) {
    return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                      "rlvr_decode_attention: want q [B, H, D], caches [B, K, S, D], D % 8 == 0, K | H");
  }
  const int64_t B = qd[0], H = qd[1], D = qd[2], KH = kd[1], S = kd[2], G = H / KH;
  const float* qp = q.typed_data();
  const float* kp = k_cache.typed_data();
  const float* vp = v_cache.typed_data();
  const bool* mp = mask.typed_data();
  float* op = out->typed_data();
  ParallelFor(pool, B * KH, [=](int64_t u) {
    const int64_t b = u / KH, kh = u % KH;
    const float* K = kp + u * S * D;
    const float* V = vp + u * S * D;
    const bool* m = mp + b * S;
    std::unique_ptr<float[]> p(new float[S]);
    for (int64_t g = 0; g < G; ++g) {
      const float* qg = qp + (b * H + kh * G + g) * D;
      float mx = -INFINITY;
      int64_t valid = 0;
      for (int64_t s = 0; s < S; ++s) {
        if (!m[s]) continue;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t d = 0; d < D; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(qg + d), _mm256_loadu_ps(K + s * D + d), acc);
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        p[s] = _mm_cvtss_f32(h) * scale;
        mx = std::max(mx, p[s]);
        ++valid;
      }
      float sum = 0.f;
      for (int64_t s = 0; s < S; ++s) {
        p[s] = !valid ? 1.f : (m[s] ? std::exp(p[s] - mx) : 0.f);
        sum += p[s];
      }
      const __m256 inv = _mm256_set1_ps(1.f / sum);
      float* o = op + (b * H + kh * G + g) * D;
      int64_t d0 = 0;
      for (; d0 + 32 <= D; d0 += 32) {  // four accumulators in registers over all slots
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t s = 0; s < S; ++s) {
          if (p[s] == 0.f) continue;
          const __m256 w = _mm256_set1_ps(p[s]);
          const float* vs = V + s * D + d0;
          a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs), a0);
          a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 8), a1);
          a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 16), a2);
          a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vs + 24), a3);
        }
        _mm256_storeu_ps(o + d0, _mm256_mul_ps(a0, inv));
        _mm256_storeu_ps(o + d0 + 8, _mm256_mul_ps(a1, inv));
        _mm256_storeu_ps(o + d0 + 16, _mm256_mul_ps(a2, inv));
        _mm256_storeu_ps(o + d0 + 24, _mm256_mul_ps(a3, inv));
      }
      for (; d0 < D; d0 += 8) {
        __m256 a0 = _mm256_setzero_ps();
        for (int64_t s = 0; s < S; ++s)
          if (p[s] != 0.f) a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[s]), _mm256_loadu_ps(V + s * D + d0), a0);
        _mm256_storeu_ps(o + d0, _mm256_mul_ps(a0, inv));
      }
    }
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(RlvrDecodeAttention, DecodeAttention,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(RlvrPack, Pack,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transposed"));

// As RlvrPack, writing into a buffer the caller passes (and XLA aliases to the output): a sampler that
// keeps its packed weights between calls reuses memory it has already touched instead of faulting in
// fresh pages for every weight on every call.
XLA_FFI_DEFINE_HANDLER_SYMBOL(RlvrPackInto,
                              ([](ffi::ThreadPool pool, ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> into,
                                  ffi::ResultBuffer<ffi::F32> out, bool transposed) {
                                if (into.typed_data() != out->typed_data()) {
                                  return ffi::Error(ffi::ErrorCode::kInvalidArgument,
                                                    "rlvr_pack_into: the buffer must alias the output");
                                }
                                return Pack(pool, w, out, transposed);
                              }),
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transposed"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(RlvrPackedGemm, PackedGemm,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
