// Native CPU kernels of the style-transfer backend (built by backend/perf/native.py).
#pragma once

#include <ATen/ATen.h>

#include <vector>

// Winograd F(4x4,3x3) convolution, float32 channels_last (winograd.cpp).
at::Tensor winograd_conv3x3(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                            int64_t pad, bool reflect, int64_t chunk);

// Instance normalisation (no affine) of a float32 channels_last tensor (instance_norm.cpp).
at::Tensor instance_norm_cl(const at::Tensor& x, double eps);
at::Tensor& instance_norm_cl_(at::Tensor& x, double eps);   // in place
// {scale, shift} [N, C]: the normalisation as x * scale + shift, x untouched
std::vector<at::Tensor> instance_norm_stats_cl(const at::Tensor& x, double eps);

// [nearest x2 +] reflect pad + conv of act(x * in_scale + in_shift) (+ residual), with the
// output's normalisation (gamma/beta [N, K]: instance norm; else scale 1, shift bias) returned
// as {raw output, scale [N, K], shift [N, K]}; the raw output goes into `buffer` when it is
// non-empty (fused_conv.cpp).
std::vector<at::Tensor> fused_conv(const at::Tensor& x, const at::Tensor& in_scale,
                                   const at::Tensor& in_shift, bool in_relu,
                                   const at::Tensor& residual, const at::Tensor& weight,
                                   int64_t stride, int64_t upsample, const at::Tensor& gamma,
                                   const at::Tensor& beta, const at::Tensor& bias, double eps,
                                   const at::Tensor& buffer);
// act(raw * scale + shift) (+ residual), into `buffer` when non-empty; act 0 none, 1 ReLU,
// 2 sigmoid (fused_conv.cpp).
at::Tensor fused_apply(const at::Tensor& raw, const at::Tensor& scale, const at::Tensor& shift,
                       int64_t act, const at::Tensor& residual, const at::Tensor& buffer);
