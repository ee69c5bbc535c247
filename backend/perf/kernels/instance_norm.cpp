// Instance normalisation of a float32 channels_last tensor on the CPU.
//
// Why: PyTorch reduces a channels_last tensor over H and W at a fraction of memory speed
// (measured 68 ms for 256 x 256² where a read takes ~5 ms), and its InstanceNorm copies such a
// tensor to NCHW first. With C contiguous, per-channel sums vectorise over C: one read for the
// statistics, one read and one write for the result.
//
// Statistics are summed in double around a per-channel shift (the first pixel's value), so
// E[(x-s)^2] - E[x-s]^2 does not cancel catastrophically; each thread sums its own rows and
// the partial sums are added in a fixed order (results do not depend on scheduling).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>

#include "kernels.h"

at::Tensor instance_norm_cl(const at::Tensor& x, double eps) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "instance_norm_cl: x must be a 4-D float32 CPU tensor");
  TORCH_CHECK(x.is_contiguous(at::MemoryFormat::ChannelsLast),
              "instance_norm_cl: x must be channels_last contiguous");
  const int64_t n = x.size(0), c = x.size(1), pixels = x.size(2) * x.size(3);
  TORCH_CHECK(pixels > 0, "instance_norm_cl: empty image");
  auto y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  const float* in = x.data_ptr<float>();
  float* out = y.data_ptr<float>();
  constexpr int64_t kRows = 1024;                       // pixels per statistics block
  const int64_t blocks = (pixels + kRows - 1) / kRows;
  std::vector<double> sums(static_cast<size_t>(blocks * c * 2));
  std::vector<float> scale(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
  for (int64_t image = 0; image < n; ++image) {
    const float* base = in + image * pixels * c;
    const float* origin = base;                         // the shift: pixel 0 of each channel
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t block = begin; block < end; ++block) {
        double* s1 = sums.data() + block * c * 2;
        double* s2 = s1 + c;
        for (int64_t k = 0; k < c; ++k) s1[k] = s2[k] = 0.0;
        const int64_t last = std::min(pixels, (block + 1) * kRows);
        for (int64_t p = block * kRows; p < last; ++p) {
          const float* row = base + p * c;
#pragma omp simd
          for (int64_t k = 0; k < c; ++k) {
            const double d = static_cast<double>(row[k]) - origin[k];
            s1[k] += d;
            s2[k] += d * d;
          }
        }
      }
    });
    for (int64_t k = 0; k < c; ++k) {
      double t1 = 0.0, t2 = 0.0;
      for (int64_t block = 0; block < blocks; ++block) {
        t1 += sums[block * c * 2 + k];
        t2 += sums[block * c * 2 + c + k];
      }
      const double mean_shifted = t1 / pixels;
      const double var = std::max(0.0, t2 / pixels - mean_shifted * mean_shifted);
      const double inv = 1.0 / std::sqrt(var + eps);
      scale[k] = static_cast<float>(inv);
      shift[k] = static_cast<float>(-(mean_shifted + origin[k]) * inv);
    }
    float* target = out + image * pixels * c;
    const float* sc = scale.data();
    const float* sh = shift.data();
    at::parallel_for(0, pixels, 256, [&](int64_t begin, int64_t end) {
      for (int64_t p = begin; p < end; ++p) {
        const float* row = base + p * c;
        float* dst = target + p * c;
#pragma omp simd
        for (int64_t k = 0; k < c; ++k) dst[k] = row[k] * sc[k] + sh[k];
      }
    });
  }
  return y;
}
