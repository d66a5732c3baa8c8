// Python bindings (nanobind, domain "mlx" so mx.array passes through).
#include <cctype>
#include <limits>

#include <nanobind/nanobind.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/variant.h>
#include <nanobind/stl/vector.h>

#include "device_fallback.h"
#include "kernels.h"
#include "thread_pool.h"
#include "mlx/version.h"
#include "ops.h"
#include "primitives/cpu_buffers.h"

namespace nb = nanobind;
using namespace nb::literals;
namespace mx = mlx::core;

namespace {

constexpr bitnet_ext::cpu::Isa all_isas[] = {
    bitnet_ext::cpu::Isa::Scalar,
    bitnet_ext::cpu::Isa::Avx2,
    bitnet_ext::cpu::Isa::Avx512,
    bitnet_ext::cpu::Isa::Avx512Vnni,
    bitnet_ext::cpu::Isa::Avx512Bf16,
    bitnet_ext::cpu::Isa::Avx512Amx,
    bitnet_ext::cpu::Isa::Neon,
    bitnet_ext::cpu::Isa::NeonDot,
};

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (auto isa : all_isas) {
    if (bitnet_ext::cpu::isa_supported(isa)) {
      names.push_back(bitnet_ext::cpu::isa_name(isa));
    }
  }
  return names;
}

// Case-insensitive, as BITNET_EXT_ISA is (csrc/cpu/isa.cpp).
void set_isa(const std::string& name) {
  std::string lower = name;
  for (auto& ch : lower) {
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  for (auto isa : all_isas) {
    if (lower == bitnet_ext::cpu::isa_name(isa)) {
      if (!bitnet_ext::cpu::isa_supported(isa)) {
        break;
      }
      bitnet_ext::cpu::set_isa(isa);
      return;
    }
  }
  std::string supported;
  for (const auto& s : supported_isas()) {
    supported += (supported.empty() ? "" : ", ") + s;
  }
  throw std::invalid_argument(
      "set_isa: name must be one of the ISA levels this CPU runs (" + supported + "), got '" + name + "'.");
}

// MLX's own conversion of a `stream=` argument asks for the device's default
// stream at once. Converting here leaves the decision to resolve_stream()
// (device_fallback.h), which names the op and the reason.
mx::StreamOrDevice stream_arg(nb::handle h) {
  if (h.is_none()) {
    return std::monostate{};
  }
  if (nb::isinstance<mx::Stream>(h)) {
    return nb::cast<mx::Stream>(h);
  }
  if (nb::isinstance<mx::Device>(h)) {
    return nb::cast<mx::Device>(h);
  }
  if (nb::isinstance<mx::Device::DeviceType>(h)) {
    return mx::Device(nb::cast<mx::Device::DeviceType>(h));
  }
  throw nb::type_error("stream must be None, an mx.Stream, an mx.Device, mx.cpu or mx.gpu.");
}

// The activation quantizer's rounding, by name.
bitnet_ext::cpu::ActRounding rounding_arg(const std::string& name, const char* op) {
  if (name == "divide") {
    return bitnet_ext::cpu::ActRounding::Divide;
  }
  if (name == "transformers") {
    return bitnet_ext::cpu::ActRounding::Transformers;
  }
  throw std::invalid_argument(
      std::string(op) + ": rounding must be 'divide' (round(x / (max / 127))) or 'transformers' "
      "(round(x * (127 / max)), as transformers' BitNet), got '" + name + "'.");
}

// Array arguments take whatever mx.array() takes (NumPy arrays, nested
// lists, scalars), as MLX's own ops do; an mx.array passes through as is.
mx::array array_arg(nb::handle h, const char* op, const char* name) {
  if (nb::isinstance<mx::array>(h)) {
    return nb::cast<mx::array>(h);
  }
  nb::object converted;
  try {
    converted = nb::module_::import_("mlx.core").attr("array")(h);
  } catch (const nb::python_error& e) {
    throw nb::type_error(
        (std::string(op) + ": " + name + " must be an mx.array or convertible by mx.array() "
         "(e.g. a NumPy array or a list), got " + nb::inst_name(h).c_str() + ": " + e.what()).c_str());
  }
  return nb::cast<mx::array>(converted);
}

// Scales may also be Python numbers, as MLX ops accept them; not bools
// (True would silently mean a scale of 1).
mx::array scale_arg(nb::handle h, const char* op) {
  if (PyBool_Check(h.ptr())) {
    throw nb::type_error((std::string(op) + ": scale must be a float array or number, got a bool.").c_str());
  }
  if (PyFloat_Check(h.ptr()) || PyLong_Check(h.ptr())) {
    return mx::array(nb::cast<float>(h), mx::float32);
  }
  return array_arg(h, op, "scale");
}

std::optional<mx::array> optional_array_arg(nb::handle h, const char* op, const char* name) {
  if (h.is_none()) {
    return std::nullopt;
  }
  return array_arg(h, op, name);
}

// Takes any Python int so that 2**40 gets the same clear error as 5000.
void set_num_threads(nb::handle n) {
  if (PyBool_Check(n.ptr()) || !PyLong_Check(n.ptr())) {
    throw nb::type_error(
        (std::string("set_num_threads: n must be an int, got ") + nb::inst_name(n).c_str() + ".").c_str());
  }
  int overflow = 0;
  long long v = PyLong_AsLongLongAndOverflow(n.ptr(), &overflow);
  if (overflow != 0) {
    v = overflow > 0 ? std::numeric_limits<long long>::max() : std::numeric_limits<long long>::min();
  }
  bitnet_ext::cpu::set_num_threads(bitnet_ext::cpu::checked_thread_count(v, "set_num_threads"));
}

} // namespace

NB_MODULE(_ext, m) {
  m.doc() = "bitnet_ext C++ extension: packed ternary MLX primitives. Use the bitnet_ext package.";

  // mx.array, mx.Dtype, streams and devices are mlx.core's types.
  nb::module_::import_("mlx.core");

  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const bitnet_ext::DTypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
  bitnet_ext::set_fallback_warning_handler([](const std::string& message) {
    if (PyErr_WarnEx(PyExc_RuntimeWarning, message.c_str(), 1) != 0) {
      throw nb::python_error(); // warnings configured as errors
    }
  });

  // Large CPU buffers stay in the heap (cpu_buffers.h); BITNET_EXT_MALLOC_TUNING=0 opts out.
  m.attr("MALLOC_TUNED") = bitnet_ext::tune_malloc_for_large_buffers();

  // The headers' version (what this module was compiled against), not the
  // loaded library's: the two must match and __init__.py checks it.
  m.attr("MLX_BUILD_VERSION") = std::to_string(MLX_VERSION_MAJOR) + "." +
      std::to_string(MLX_VERSION_MINOR) + "." + std::to_string(MLX_VERSION_PATCH);
  m.attr("MLX_BUILD_VERSION_NUMERIC") = MLX_VERSION_NUMERIC;
  // The MLX GPU backend this build has kernels for: "metal", "cuda" or "none"
  // (then a GPU request falls back to the CPU, device_fallback.h).
#if defined(BITNET_EXT_METAL)
  m.attr("GPU_BACKEND") = "metal";
#elif defined(BITNET_EXT_CUDA)
  m.attr("GPU_BACKEND") = "cuda";
#else
  m.attr("GPU_BACKEND") = "none";
#endif

  // Signatures spelled out so the generated stubs show mx types (the
  // stream and scale arguments are converted by hand, see above).
#define STREAM_SIG "stream: mlx.core.Stream | mlx.core.Device | mlx.core.DeviceType | None = None"
  m.def(
      "pack",
      [](nb::handle codes, nb::handle s) {
        return bitnet_ext::pack(array_arg(codes, "pack", "codes"), stream_arg(s));
      },
      "codes"_a, nb::kw_only(), "stream"_a = nb::none(),
      nb::sig("def pack(codes: mlx.core.array, *, " STREAM_SIG ") -> mlx.core.array"),
      "Pack integer codes (N, K) into uint32 (N, K/16). Values are not checked here;\n"
      "bitnet_ext.pack() checks them.");
  m.def(
      "unpack",
      [](nb::handle wq, nb::handle s) { return bitnet_ext::unpack(array_arg(wq, "unpack", "wq"), stream_arg(s)); },
      "wq"_a, nb::kw_only(), "stream"_a = nb::none(),
      nb::sig("def unpack(wq: mlx.core.array, *, " STREAM_SIG ") -> mlx.core.array"),
      "Unpack uint32 (N, K/16) into int8 codes (N, K) in {-1, 0, 1}.");
  m.def(
      "dequantize",
      [](nb::handle wq, nb::handle scale, mx::Dtype dtype, nb::handle s) {
        const char* op = "dequantize";
        return bitnet_ext::dequantize(array_arg(wq, op, "wq"), scale_arg(scale, op), dtype, stream_arg(s));
      },
      "wq"_a, "scale"_a, nb::kw_only(), "dtype"_a = mx::float16, "stream"_a = nb::none(),
      nb::sig("def dequantize(wq: mlx.core.array, scale: mlx.core.array | float, *, "
              "dtype: mlx.core.Dtype = mlx.core.float16, " STREAM_SIG ") -> mlx.core.array"),
      "scale * W as dtype, shape (N, K); scale is () or (1,) per tensor, or (N,) per row.");
  m.def(
      "absmean_quantize",
      [](nb::handle w, bool per_channel, float eps, nb::handle s) {
        return bitnet_ext::absmean_quantize(
            array_arg(w, "absmean_quantize", "w"), per_channel, eps, stream_arg(s));
      },
      "w"_a, nb::kw_only(), "per_channel"_a = false, "eps"_a = 1e-5f, "stream"_a = nb::none(),
      nb::sig("def absmean_quantize(w: mlx.core.array, *, per_channel: bool = False, eps: float = 1e-05, "
              STREAM_SIG ") -> tuple[mlx.core.array, mlx.core.array]"),
      "BitNet b1.58 absmean quantization of w (N, K), K % 16 == 0.\n\n"
      "scale = max(mean|w|, eps) over the matrix (float32 ()) or each row (float32 (N,));\n"
      "codes = clip(round(w / scale), -1, 1). Returns (wq uint32 (N, K/16), scale).");
  m.def(
      "absmax_quantize",
      [](nb::handle x, float eps, const std::string& rounding, nb::handle s) {
        return bitnet_ext::absmax_quantize(
            array_arg(x, "absmax_quantize", "x"), eps, stream_arg(s), rounding_arg(rounding, "absmax_quantize"));
      },
      "x"_a, nb::kw_only(), "eps"_a = 1e-5f, "rounding"_a = "divide", "stream"_a = nb::none(),
      nb::sig("def absmax_quantize(x: mlx.core.array, *, eps: float = 1e-05, rounding: str = 'divide', " STREAM_SIG
              ") -> tuple[mlx.core.array, mlx.core.array]"),
      "Per-token (last axis) int8 quantization.\n\n"
      "xscale = max(max|x|, eps) / 127, xq = clip(round(x / xscale), -128, 127).\n"
      "rounding='transformers' computes xq = clip(round(x * ((1 / max(max|x|, eps)) * 127)), -128, 127)\n"
      "instead, as transformers' BitNet does in torch (CPU only; differs on ~1 code in 10^6).\n"
      "Returns (xq int8 (..., K), xscale float32 (..., 1)).");
  m.def(
      "ternary_matmul",
      [](nb::handle x, nb::handle wq, nb::handle scale, bool transpose, nb::handle s) {
        const char* op = "ternary_matmul";
        return bitnet_ext::ternary_matmul(
            array_arg(x, op, "x"), array_arg(wq, op, "wq"), scale_arg(scale, op), transpose, stream_arg(s));
      },
      "x"_a, "wq"_a, "scale"_a, nb::kw_only(), "transpose"_a = true, "stream"_a = nb::none(),
      nb::sig("def ternary_matmul(x: mlx.core.array, wq: mlx.core.array, scale: mlx.core.array | float, *, "
              "transpose: bool = True, " STREAM_SIG ") -> mlx.core.array"),
      "Matmul with packed ternary weights, W_eff = diag(scale) @ W.\n\n"
      "transpose=True: x (..., K) -> x @ W_eff.T, shape (..., N).\n"
      "transpose=False: x (..., N) -> x @ W_eff, shape (..., K).\n"
      "x is float16, bfloat16 or float32; float32 accumulation; the result has x's dtype.");
  m.def(
      "bitlinear",
      [](nb::handle x, nb::handle wq, nb::handle scale, nb::handle bias, const std::string& rounding,
         nb::handle s) {
        const char* op = "bitlinear";
        return bitnet_ext::bitlinear(
            array_arg(x, op, "x"), array_arg(wq, op, "wq"), scale_arg(scale, op),
            optional_array_arg(bias, op, "bias"), stream_arg(s), rounding_arg(rounding, op));
      },
      "x"_a, "wq"_a, "scale"_a, "bias"_a = nb::none(), nb::kw_only(), "rounding"_a = "divide",
      "stream"_a = nb::none(),
      nb::sig("def bitlinear(x: mlx.core.array, wq: mlx.core.array, scale: mlx.core.array | float, "
              "bias: mlx.core.array | None = None, *, rounding: str = 'divide', " STREAM_SIG
              ") -> mlx.core.array"),
      "The BitNet b1.58 W1.58A8 linear forward, x (..., K) -> (..., N) in x's dtype.\n\n"
      "x is absmax-quantized to int8 per token (rounding: see absmax_quantize), multiplied\n"
      "with the ternary W in exact int32, then y = (acc * xscale) * scale + bias in float32.");
  m.def(
      "dense_matmul",
      [](nb::handle x, nb::handle w, nb::handle s) {
        return bitnet_ext::dense_matmul(
            array_arg(x, "dense_matmul", "x"), array_arg(w, "dense_matmul", "w"), stream_arg(s));
      },
      "x"_a, "w"_a, nb::kw_only(), "stream"_a = nb::none(),
      nb::sig("def dense_matmul(x: mlx.core.array, w: mlx.core.array, *, " STREAM_SIG ") -> mlx.core.array"),
      "Dense float matmul x @ w.T, e.g. a model's float output head.\n\n"
      "x (..., K) float16/bfloat16/float32, w (N, K) float16/bfloat16/float32 (used as stored,\n"
      "no copy or conversion of w). float32 accumulation; the result (..., N) has x's dtype.\n"
      "CPU streams run bitnet_ext's kernels (M = 1 streams w once); GPU streams use mx.matmul.");
  m.def(
      "int8_matmul",
      [](nb::handle x, nb::handle wq, nb::handle row_scale, nb::handle s) {
        const char* op = "int8_matmul";
        return bitnet_ext::int8_matmul(
            array_arg(x, op, "x"), array_arg(wq, op, "wq"), array_arg(row_scale, op, "row_scale"), stream_arg(s));
      },
      "x"_a, "wq"_a, "row_scale"_a, nb::kw_only(), "stream"_a = nb::none(),
      nb::sig("def int8_matmul(x: mlx.core.array, wq: mlx.core.array, row_scale: mlx.core.array, *, " STREAM_SIG
              ") -> mlx.core.array"),
      "The opt-in int8 head: x (..., K) -> (..., N) in x's dtype, CPU only.\n\n"
      "x is absmax-quantized to int8 per token (as in bitlinear), multiplied with wq int8 (N, K)\n"
      "(from int8_quantize_rows) in exact int32, then y = (acc * xscale) * row_scale in float32.\n"
      "K is at most 132,104 (exact int32 accumulation).");
  m.def(
      "attention",
      [](nb::handle q, nb::handle k, nb::handle v, float scale, nb::handle mask, nb::handle s) {
        const char* op = "attention";
        bool causal = false;
        if (!mask.is_none()) {
          if (!nb::isinstance<nb::str>(mask) || nb::cast<std::string>(mask) != "causal") {
            throw bitnet_ext::ArgumentError(
                "attention: mask must be None or 'causal' (array masks: mx.fast.scaled_dot_product_attention), got " +
                nb::cast<std::string>(nb::repr(mask)));
          }
          causal = true;
        }
        return bitnet_ext::attention(
            array_arg(q, op, "queries"), array_arg(k, op, "keys"), array_arg(v, op, "values"), scale, causal,
            stream_arg(s));
      },
      "queries"_a, "keys"_a, "values"_a, nb::kw_only(), "scale"_a, "mask"_a = nb::none(), "stream"_a = nb::none(),
      nb::sig("def attention(queries: mlx.core.array, keys: mlx.core.array, values: mlx.core.array, *, scale: float, "
              "mask: str | None = None, " STREAM_SIG ") -> mlx.core.array"),
      "Scaled dot-product attention softmax(q k^T * scale [+ causal mask]) v, as\n"
      "mx.fast.scaled_dot_product_attention with mask None or 'causal'.\n\n"
      "queries (B, Hq, L, D), keys and values (B, Hkv, S, D) of one float dtype, Hq a multiple of\n"
      "Hkv (grouped-query attention). 'causal': query i sits at position S - L + i. Returns\n"
      "(B, Hq, L, D) in the queries' dtype; scores and softmax in float32. CPU streams run\n"
      "bitnet_ext's kernel, which reads keys and values in place (e.g. a KV cache slice) and\n"
      "skips the masked keys; GPU streams use mx.fast.scaled_dot_product_attention.");
  m.def(
      "rms_norm",
      [](nb::handle x, nb::handle weight, float eps, nb::handle s) {
        const char* op = "rms_norm";
        return bitnet_ext::rms_norm(array_arg(x, op, "x"), array_arg(weight, op, "weight"), eps, stream_arg(s));
      },
      "x"_a, "weight"_a, "eps"_a = 1e-5f, nb::kw_only(), "stream"_a = nb::none(),
      nb::sig("def rms_norm(x: mlx.core.array, weight: mlx.core.array, eps: float = 1e-05, *, " STREAM_SIG
              ") -> mlx.core.array"),
      "RMSNorm over the last axis, as mx.fast.rms_norm(x, weight, eps), in one CPU op.\n\n"
      "x (..., D) float, weight (D,) float; result in result_type(x, weight). float32 sum of\n"
      "squares; x * rsqrt(mean(x^2) + eps) is rounded to the result dtype, then multiplied by\n"
      "weight in it (MLX's roundings). Differentiable (MLX's derivative of the same function).\n"
      "CPU streams run bitnet_ext's kernel (MLX decomposes it into ~12 ops there); GPU streams\n"
      "use mx.fast.rms_norm.");
  m.def(
      "relu2_mul",
      [](nb::handle gate, nb::handle up, nb::handle s) {
        const char* op = "relu2_mul";
        return bitnet_ext::relu2_mul(array_arg(gate, op, "gate"), array_arg(up, op, "up"), stream_arg(s));
      },
      "gate"_a, "up"_a, nb::kw_only(), "stream"_a = nb::none(),
      nb::sig("def relu2_mul(gate: mlx.core.array, up: mlx.core.array, *, " STREAM_SIG ") -> mlx.core.array"),
      "relu(gate)^2 * up, BitNet's gated MLP activation (mlx.nn.relu2(gate) * up), in one CPU op.\n\n"
      "gate and up: one float dtype and one shape. Bit-identical to MLX's three ops in that dtype\n"
      "(relu(gate)^2 rounded to it, then the product with up). Differentiable (MLX's derivative of\n"
      "the same ops). GPU streams run MLX's ops.");
  m.def(
      "rope",
      [](nb::handle x, int dims, bool traditional, float base, float scale, nb::handle offset, nb::handle s) {
        const char* op = "rope";
        if (PyBool_Check(offset.ptr())) {
          throw nb::type_error("rope: offset must be an int or an integer mx.array, got a bool.");
        }
        mx::array off = PyLong_Check(offset.ptr()) ? mx::array(nb::cast<int>(offset), mx::int32)
                                                   : array_arg(offset, op, "offset");
        return bitnet_ext::rope(array_arg(x, op, "x"), dims, traditional, base, scale, off, stream_arg(s));
      },
      "x"_a, "dims"_a, nb::kw_only(), "traditional"_a = false, "base"_a = 10000.0f, "scale"_a = 1.0f,
      "offset"_a = 0, "stream"_a = nb::none(),
      nb::sig("def rope(x: mlx.core.array, dims: int, *, traditional: bool = False, base: float = 10000.0, "
              "scale: float = 1.0, offset: int | mlx.core.array = 0, " STREAM_SIG ") -> mlx.core.array"),
      "Rotary position embedding, as mx.fast.rope(x, dims, traditional=, base=, scale=, offset=),\n"
      "in one CPU op.\n\n"
      "x (B, ..., T, D) float; the first `dims` (even) elements of the last axis are rotated in\n"
      "pairs ((i, i + dims/2), or (2i, 2i + 1) when traditional), by the angle\n"
      "(offset + t) * scale * base**(-i / (dims/2)) at position t of axis -2; the rest is copied.\n"
      "offset: an int, or an integer array of one value or one per B. float32 rotation, one\n"
      "rounding to x's dtype. Differentiable in x. CPU streams run bitnet_ext's kernel (MLX\n"
      "decomposes it into ~30 ops there); GPU streams use mx.fast.rope.");
#undef STREAM_SIG

  m.def("_pretend_gpu_backend_for_testing", &bitnet_ext::pretend_gpu_backend_for_testing, "on"_a,
        "Tests only: treat stream=mx.gpu as an MLX GPU backend without bitnet_ext kernels.");

  m.def("supported_isas", &supported_isas, "CPU instruction-set levels this machine can run.");
  m.def("active_isa", [] { return std::string(bitnet_ext::cpu::isa_name(bitnet_ext::cpu::active_isa())); },
        "The instruction-set level the CPU kernels use now.");
  m.def("set_isa", &set_isa, "name"_a, "Force an instruction-set level (testing, benchmarking).");
  m.def("reset_isa", &bitnet_ext::cpu::reset_isa, "Back to BITNET_EXT_ISA or the best level.");
  m.def("num_threads", &bitnet_ext::cpu::num_threads, "Threads the CPU kernels split work over.");
  m.def("set_num_threads", &set_num_threads, "n"_a, nb::sig("def set_num_threads(n: int) -> None"),
        "Set the CPU kernels' thread count, 1 to max(256, 4 x hardware threads).\n\n"
        "If the threads cannot be started, raises and keeps the previous pool.");
}
