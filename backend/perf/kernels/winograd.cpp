// Winograd F(4x4, 3x3) convolution for float32 channels_last tensors on the CPU.
//
// Why: a 3x3 convolution computed as Winograd F(4x4,3x3) needs 36 instead of 144 multiplications
// per 4x4 output tile and channel pair (4x fewer). The products become 36 independent matrix
// products [tiles x C] @ [C x K], which the BLAS behind at::bmm runs at full speed. oneDNN's
// direct convolution is the ceiling for every float32 direct method; this is the only float32
// route past it (measured in bench/results/perf-cpu-*.md).
//
// Layout: x is [N, C, H, W] in channels_last memory (C contiguous), so the input and output
// transforms work on CB-wide channel vectors. Tiles are processed in chunks so that the
// transformed tiles (V) and products (M) of one chunk stay in cache between the three steps.
// Padding (reflect or zero, 1 px) is folded into the input gather: no padded copy is made.
//
// Transform matrices (interpolation points 0, 1, -1, 2, -2, inf; Lavin & Gray 2016):
//   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
//   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
// The weight transform G g G^T is done once per weight in Python (float64), see winograd.py.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "kernels.h"

#include <algorithm>
#include <atomic>
#include <cstdint>

namespace {

constexpr int CB = 16;   // channels per vector block (one AVX-512 register of float32)

// v = B^T d for six CB-wide vectors
inline void input_rows(const float* const d[6], float* const v[6]) {
#pragma omp simd
  for (int c = 0; c < CB; ++c) {
    const float d0 = d[0][c], d1 = d[1][c], d2 = d[2][c], d3 = d[3][c], d4 = d[4][c],
                d5 = d[5][c];
    v[0][c] = 4.f * d0 - 5.f * d2 + d4;
    v[1][c] = -4.f * (d1 + d2) + d3 + d4;
    v[2][c] = 4.f * (d1 - d2) - d3 + d4;
    v[3][c] = 2.f * (d3 - d1) - d2 + d4;
    v[4][c] = 2.f * (d1 - d3) - d2 + d4;
    v[5][c] = 4.f * d1 - 5.f * d3 + d5;
  }
}

// o = A^T m for six CB-wide vectors in, four out
inline void output_rows(const float* const m[6], float* const o[4]) {
#pragma omp simd
  for (int c = 0; c < CB; ++c) {
    const float m0 = m[0][c], m1 = m[1][c], m2 = m[2][c], m3 = m[3][c], m4 = m[4][c],
                m5 = m[5][c];
    const float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;
    o[0][c] = m0 + s12 + s34;
    o[1][c] = d12 + 2.f * d34;
    o[2][c] = s12 + 4.f * s34;
    o[3][c] = d12 + 8.f * d34 + m5;
  }
}

// Source row/column of padded position i, or -1 for a zero (zero padding, or past the padded
// border: such positions only feed outputs beyond the image, which are never stored).
inline int64_t source_index(int64_t i, int64_t n, int64_t pad, bool reflect) {
  const int64_t r = i - pad;
  if (r >= 0 && r < n) return r;
  if (!reflect) return -1;
  if (r < 0 && -r < n) return -r;
  if (r >= n && 2 * (n - 1) - r >= 0) return 2 * (n - 1) - r;
  return -1;
}

struct Geometry {
  int64_t n, c, h, w, k, pad, out_h, out_w, tiles_h, tiles_w, tiles;
  bool reflect;
};

void transform_input(const Geometry& g, const float* x, float* v, int64_t first, int64_t count,
                     int64_t stride) {
  at::parallel_for(0, count, 4, [&](int64_t begin, int64_t end) {
    alignas(64) float rows[36][CB];
    alignas(64) static const float zeros[CB] = {0};
    for (int64_t q = begin; q < end; ++q) {
      const int64_t t = first + q;
      const int64_t image = t / (g.tiles_h * g.tiles_w), rest = t % (g.tiles_h * g.tiles_w);
      const int64_t ti = rest / g.tiles_w, tj = rest % g.tiles_w;
      int64_t row_at[6], col_at[6];
      for (int i = 0; i < 6; ++i) {
        const int64_t r = source_index(4 * ti + i, g.h, g.pad, g.reflect);
        row_at[i] = r < 0 ? -1 : (image * g.h + r) * g.w * g.c;
        const int64_t col = source_index(4 * tj + i, g.w, g.pad, g.reflect);
        col_at[i] = col < 0 ? -1 : col * g.c;
      }
      for (int64_t c0 = 0; c0 < g.c; c0 += CB) {
        for (int i = 0; i < 6; ++i) {            // along each row: rows[i][*] = d[i] B
          const float* in[6];
          for (int j = 0; j < 6; ++j)
            in[j] = (row_at[i] < 0 || col_at[j] < 0) ? zeros : x + row_at[i] + col_at[j] + c0;
          float* out[6] = {rows[i * 6], rows[i * 6 + 1], rows[i * 6 + 2],
                           rows[i * 6 + 3], rows[i * 6 + 4], rows[i * 6 + 5]};
          input_rows(in, out);
        }
        for (int j = 0; j < 6; ++j) {            // down each column: V[i][j] = B^T rows
          const float* in[6] = {rows[j], rows[6 + j], rows[12 + j],
                                rows[18 + j], rows[24 + j], rows[30 + j]};
          float* out[6];
          for (int i = 0; i < 6; ++i) out[i] = v + ((i * 6 + j) * stride + q) * g.c + c0;
          input_rows(in, out);
        }
      }
    }
  });
}

void transform_output(const Geometry& g, const float* m, const float* bias, float* y,
                      int64_t first, int64_t count, int64_t stride) {
  at::parallel_for(0, count, 4, [&](int64_t begin, int64_t end) {
    alignas(64) float cols[24][CB];
    alignas(64) float tile[16][CB];
    for (int64_t q = begin; q < end; ++q) {
      const int64_t t = first + q;
      const int64_t image = t / (g.tiles_h * g.tiles_w), rest = t % (g.tiles_h * g.tiles_w);
      const int64_t ti = rest / g.tiles_w, tj = rest % g.tiles_w;
      for (int64_t k0 = 0; k0 < g.k; k0 += CB) {
        for (int j = 0; j < 6; ++j) {            // down each column: 6 rows -> 4
          const float* in[6];
          for (int i = 0; i < 6; ++i) in[i] = m + ((i * 6 + j) * stride + q) * g.k + k0;
          float* out[4] = {cols[j], cols[6 + j], cols[12 + j], cols[18 + j]};
          output_rows(in, out);
        }
        for (int r = 0; r < 4; ++r) {            // along each row: 6 columns -> 4
          const float* in[6] = {cols[r * 6], cols[r * 6 + 1], cols[r * 6 + 2],
                                cols[r * 6 + 3], cols[r * 6 + 4], cols[r * 6 + 5]};
          float* out[4] = {tile[r * 4], tile[r * 4 + 1], tile[r * 4 + 2], tile[r * 4 + 3]};
          output_rows(in, out);
        }
        for (int r = 0; r < 4 && 4 * ti + r < g.out_h; ++r) {
          for (int s = 0; s < 4 && 4 * tj + s < g.out_w; ++s) {
            float* dst = y + ((image * g.out_h + 4 * ti + r) * g.out_w + 4 * tj + s) * g.k + k0;
            const float* value = tile[r * 4 + s];
            if (bias) {
#pragma omp simd
              for (int c = 0; c < CB; ++c) dst[c] = value[c] + bias[k0 + c];
            } else {
#pragma omp simd
              for (int c = 0; c < CB; ++c) dst[c] = value[c];
            }
          }
        }
      }
    }
  });
}

}  // namespace

// x: [N, C, H, W] float32 channels_last; u: [36, C, K] (transformed weight); bias: [K] or an
// empty tensor; pad: 0 or 1 px on every side (reflect or zeros); chunk: tiles per chunk.
at::Tensor winograd_conv3x3(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                   int64_t pad, bool reflect, int64_t chunk) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "winograd conv3x3: x must be a 4-D float32 CPU tensor");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "winograd conv3x3: x must be channels_last contiguous");
  TORCH_CHECK(u.dim() == 3 && u.size(0) == 36 && u.size(1) == x.size(1) && u.is_contiguous()
              && u.scalar_type() == at::kFloat, "winograd conv3x3: u must be [36, C, K]");
  TORCH_CHECK(pad == 0 || pad == 1, "winograd conv3x3: pad must be 0 or 1");
  Geometry g{};
  g.n = x.size(0); g.c = x.size(1); g.h = x.size(2); g.w = x.size(3); g.k = u.size(2);
  g.pad = pad; g.reflect = reflect;
  TORCH_CHECK(g.c % CB == 0 && g.k % CB == 0, "winograd conv3x3: channels must be multiples of 16");
  TORCH_CHECK(!reflect || pad == 0 || (g.h > 1 && g.w > 1), "reflect padding needs 2+ px");
  g.out_h = g.h + 2 * pad - 2; g.out_w = g.w + 2 * pad - 2;
  TORCH_CHECK(g.out_h > 0 && g.out_w > 0, "winograd conv3x3: image smaller than the kernel");
  g.tiles_h = (g.out_h + 3) / 4; g.tiles_w = (g.out_w + 3) / 4;
  g.tiles = g.n * g.tiles_h * g.tiles_w;
  const bool has_bias = bias.defined() && bias.numel() > 0;
  TORCH_CHECK(!has_bias || (bias.numel() == g.k && bias.is_contiguous()
                            && bias.scalar_type() == at::kFloat), "winograd conv3x3: bad bias");

  auto y = at::empty({g.n, g.k, g.out_h, g.out_w},
                     x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const int64_t per_chunk = std::max<int64_t>(1, std::min(chunk, g.tiles));
  const float* x_data = x.data_ptr<float>();
  const float* b_data = has_bias ? bias.data_ptr<float>() : nullptr;
  float* y_data = y.data_ptr<float>();
  const int64_t chunks = (g.tiles + per_chunk - 1) / per_chunk;
  const int64_t threads = at::get_num_threads();
  // One chunk = input transform, 36 products, output transform, all on one thread.
  auto run_chunk = [&](int64_t index, at::Tensor& v, at::Tensor& m) {
    const int64_t first = index * per_chunk, count = std::min(per_chunk, g.tiles - first);
    transform_input(g, x_data, v.data_ptr<float>(), first, count, per_chunk);
    auto m_view = m.narrow(1, 0, count);
    at::bmm_out(m_view, v.narrow(1, 0, count), u);
    transform_output(g, m.data_ptr<float>(), b_data, y_data, first, count, per_chunk);
  };
  if (threads > 1 && chunks >= 2 * threads) {
    // Whole chunks handed out one at a time to threads with their own V and M: no barrier
    // per step, and on a shared machine a thread that loses its CPU takes fewer chunks
    // instead of holding the others at three barriers per chunk (the transforms' and the
    // product's). Inside this region the transforms and bmm run on the calling thread.
    std::atomic<int64_t> next{0};
    at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
      auto v = at::empty({36, per_chunk, g.c}, x.options());
      auto m = at::empty({36, per_chunk, g.k}, x.options());
      for (int64_t index = next.fetch_add(1); index < chunks; index = next.fetch_add(1))
        run_chunk(index, v, m);
    });
    return y;
  }
  auto v = at::empty({36, per_chunk, g.c}, x.options());
  auto m = at::empty({36, per_chunk, g.k}, x.options());
  for (int64_t index = 0; index < chunks; ++index) run_chunk(index, v, m);   // few chunks:
  return y;                                                // each step split over threads
}
