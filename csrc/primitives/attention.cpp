#include "primitives/attention.h"

#include <stdexcept>

#include "arg_checks.h"
#include "attention_kernel.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/ops.h"
#include "mlx/transforms.h"
#include "primitives/cpu_buffers.h"

namespace bitnet_ext {

namespace {

cpu::DenseType kv_type(mx::Dtype d) {
  switch (d) {
    case mx::float16:
      return cpu::DenseType::F16;
    case mx::bfloat16:
      return cpu::DenseType::BF16;
    default:
      return cpu::DenseType::F32;
  }
}

// Keys or values as the kernel reads them: in place when the last axis has
// unit stride (a KV-cache slice does), else converted to contiguous float32.
struct KvView {
  const void* data;
  cpu::DenseType type;
  int64_t stride[3];
  FloatRows converted;
};

KvView kv_view(const mx::array& a) {
  KvView view;
  if (a.strides()[3] == 1 || a.shape(3) == 1) {
    view.data = a.data<uint8_t>(); // data<T>() includes the array's offset
    view.type = kv_type(a.dtype());
    for (int i = 0; i < 3; ++i) view.stride[i] = a.strides()[i];
    return view;
  }
  view.converted = read_float_rows(a); // contiguous (rows of D) unless it could borrow
  view.data = view.converted.data;
  view.type = cpu::DenseType::F32;
  const int64_t ld = view.converted.ld;
  view.stride[2] = ld;
  view.stride[1] = ld * a.shape(2);
  view.stride[0] = view.stride[1] * a.shape(1);
  return view;
}

} // namespace

mx::array Attention::node(const mx::array& q, const mx::array& k, const mx::array& v, float scale, bool causal,
                          mx::Stream s) {
  auto shape = attention_shape(q, k, v);
  return mx::array(std::move(shape), q.dtype(), std::make_shared<Attention>(s, scale, causal), {q, k, v});
}

mx::array Attention::reference(const mx::array& q, const mx::array& k, const mx::array& v, float scale, bool causal,
                               mx::Stream s) {
  const int B = q.shape(0), Hq = q.shape(1), L = q.shape(2), D = q.shape(3);
  const int Hkv = k.shape(1), S = k.shape(2), G = Hq / Hkv;
  auto qf = mx::reshape(mx::astype(q, mx::float32, s), {B, Hkv, G * L, D}, s);
  auto kf = mx::astype(k, mx::float32, s);
  auto vf = mx::astype(v, mx::float32, s);
  auto scores = mx::multiply(mx::matmul(qf, mx::swapaxes(kf, 2, 3, s), s), mx::array(scale), s); // (B, Hkv, G*L, S)
  if (causal) {
    // Row g * L + i is query i, at position S - L + i.
    auto pos = mx::add(mx::remainder(mx::arange(G * L, s), mx::array(L), s), mx::array(S - L), s);
    auto keep = mx::less_equal(mx::reshape(mx::arange(S, s), {1, S}, s), mx::reshape(pos, {G * L, 1}, s), s);
    scores = mx::where(keep, scores, mx::array(-std::numeric_limits<float>::infinity()), s);
  }
  auto out = mx::matmul(mx::softmax(scores, {-1}, true, s), vf, s); // (B, Hkv, G*L, D)
  out = mx::transpose(mx::reshape(out, {B, Hq, L, D}, s), {0, 2, 1, 3}, s);
  return mx::astype(out, q.dtype(), s);
}

void Attention::eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) {
  check_eval_shape("attention", output_shapes(inputs)[0], out);
  allocate(out);
  auto& encoder = mx::cpu::get_command_encoder(stream());
  encoder.dispatch([q = mx::array::unsafe_weak_copy(inputs[0]),
                    k = mx::array::unsafe_weak_copy(inputs[1]),
                    v = mx::array::unsafe_weak_copy(inputs[2]),
                    out = mx::array::unsafe_weak_copy(out),
                    scale = scale_,
                    causal = causal_]() mutable {
    FloatRows qr = read_float_rows(q);
    std::vector<float> qc;
    const float* qp = qr.data;
    if (qr.rows > 1 && qr.ld != qr.cols) { // the kernel takes contiguous rows of D
      qc.resize(static_cast<size_t>(qr.rows * qr.cols));
      for (int64_t r = 0; r < qr.rows; ++r)
        std::copy(qr.data + r * qr.ld, qr.data + r * qr.ld + qr.cols, qc.data() + r * qr.cols);
      qp = qc.data();
    }
    KvView kv[2] = {kv_view(k), kv_view(v)};
    FloatBuffer scratch;
    float* y = float_output(out, scratch);
    cpu::AttentionArgs a{};
    a.q = qp;
    a.k = kv[0].data;
    a.v = kv[1].data;
    a.kv_type = kv[0].type;
    for (int i = 0; i < 3; ++i) {
      a.k_stride[i] = kv[0].stride[i];
      a.v_stride[i] = kv[1].stride[i];
    }
    if (kv[0].type != kv[1].type) { // one was converted: convert the other too
      for (int j = 0; j < 2; ++j) {
        if (kv[j].type != cpu::DenseType::F32) {
          kv[j].converted = read_float_rows(j == 0 ? k : v);
          kv[j].data = kv[j].converted.data;
          kv[j].type = cpu::DenseType::F32;
          const int64_t ld = kv[j].converted.ld;
          kv[j].stride[2] = ld;
          kv[j].stride[1] = ld * k.shape(2);
          kv[j].stride[0] = kv[j].stride[1] * k.shape(1);
        }
      }
      a.k = kv[0].data;
      a.v = kv[1].data;
      a.kv_type = cpu::DenseType::F32;
      for (int i = 0; i < 3; ++i) {
        a.k_stride[i] = kv[0].stride[i];
        a.v_stride[i] = kv[1].stride[i];
      }
    }
    a.out = y;
    a.B = q.shape(0);
    a.Hq = q.shape(1);
    a.L = q.shape(2);
    a.D = q.shape(3);
    a.Hkv = k.shape(1);
    a.S = k.shape(2);
    a.scale = scale;
    a.causal = causal;
    if (a.S == 0) {
      std::fill(y, y + out.size(), 0.0f);
    } else {
      cpu::attention(a);
    }
    finish_float_output(out, scratch);
  });
}

void Attention::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  throw std::logic_error("bitnet_ext: Attention has no GPU kernel; attention() uses MLX's fast attention on GPUs");
}

std::vector<mx::array> Attention::jvp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& tangents,
    const std::vector<int>& argnums) {
  std::vector<mx::array> t = {mx::zeros_like(primals[0], stream()), mx::zeros_like(primals[1], stream()),
                              mx::zeros_like(primals[2], stream())};
  for (size_t i = 0; i < argnums.size(); ++i) t[argnums[i]] = tangents[i];
  auto f = [this](const std::vector<mx::array>& in) {
    return std::vector<mx::array>{reference(in[0], in[1], in[2], scale_, causal_, stream())};
  };
  return mx::jvp(f, primals, t).second;
}

std::vector<mx::array> Attention::vjp(
    const std::vector<mx::array>& primals,
    const std::vector<mx::array>& cotangents,
    const std::vector<int>& argnums,
    const std::vector<mx::array>&) {
  auto f = [this](const std::vector<mx::array>& in) {
    return std::vector<mx::array>{reference(in[0], in[1], in[2], scale_, causal_, stream())};
  };
  auto grads = mx::vjp(f, primals, cotangents).second;
  std::vector<mx::array> out;
  for (int a : argnums) out.push_back(grads[a]);
  return out;
}

std::pair<std::vector<mx::array>, std::vector<int>> Attention::vmap(
    const std::vector<mx::array>& inputs,
    const std::vector<int>& axes) {
  // Fold the vmapped axis into the batch: (V, B, ...) -> (V * B, ...).
  int V = 1;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (axes[i] >= 0) V = inputs[i].shape(axes[i]);
  }
  std::vector<mx::array> folded;
  for (size_t i = 0; i < inputs.size(); ++i) {
    mx::array a = axes[i] >= 0 ? mx::moveaxis(inputs[i], axes[i], 0, stream())
                               : mx::expand_dims(inputs[i], 0, stream());
    mx::Shape shape = a.shape();
    shape[0] = V;
    a = mx::broadcast_to(a, shape, stream());
    shape.erase(shape.begin());
    shape[0] *= V;
    folded.push_back(mx::reshape(a, shape, stream()));
  }
  auto y = node(folded[0], folded[1], folded[2], scale_, causal_, stream()); // (V * B, L, Hq, D)
  mx::Shape shape = y.shape();
  shape[0] /= V;
  shape.insert(shape.begin(), V);
  return {{mx::reshape(y, shape, stream())}, {0}};
}

std::vector<mx::Shape> Attention::output_shapes(const std::vector<mx::array>& inputs) {
  return {attention_shape(inputs[0], inputs[1], inputs[2])};
}

bool Attention::is_equivalent(const mx::Primitive& other) const {
  const auto& o = static_cast<const Attention&>(other);
  return scale_ == o.scale_ && causal_ == o.causal_;
}

} // namespace bitnet_ext
