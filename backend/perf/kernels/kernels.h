// Native CPU kernels of the style-transfer backend (built by backend/perf/native.py).
#pragma once

#include <ATen/ATen.h>

// Winograd F(4x4,3x3) convolution, float32 channels_last (winograd.cpp).
at::Tensor winograd_conv3x3(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias,
                            int64_t pad, bool reflect, int64_t chunk);

// Instance normalisation (no affine) of a float32 channels_last tensor (instance_norm.cpp).
at::Tensor instance_norm_cl(const at::Tensor& x, double eps);
at::Tensor& instance_norm_cl_(at::Tensor& x, double eps);   // in place
