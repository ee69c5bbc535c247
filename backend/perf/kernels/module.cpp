// Python bindings of the native CPU kernels (the module backend/perf/native.py loads).
#include <torch/extension.h>

#include "kernels.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("winograd_conv3x3", &winograd_conv3x3,
             "Winograd F(4x4,3x3) convolution (float32, channels_last)");
  module.def("instance_norm_cl", &instance_norm_cl,
             "instance normalisation without affine parameters (float32, channels_last)");
  module.def("instance_norm_cl_", &instance_norm_cl_,
             "instance_norm_cl in place (a convolution's fresh output)");
  module.def("instance_norm_stats_cl", &instance_norm_stats_cl,
             "the instance normalisation's per-channel scale and shift, [N, C] each");
  module.def("fused_conv", &fused_conv,
             "small-channel conv layer with its input's norm/activation and its output's "
             "statistics fused (float32)");
  module.def("fused_apply", &fused_apply, "act(raw * scale + shift) (+ residual), float32");
}
