// See library.h. UNVERIFIED on Apple hardware (written on Linux from MLX's
// sources; docs/metal_backend.md).
#ifdef _METAL_

#include "gpu/metal/library.h"

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "gpu/metal/jit_source.h"
#include "mlx/backend/metal/metal.h"

#ifndef BITNET_EXT_KERNELS_SOURCE_DIR
#define BITNET_EXT_KERNELS_SOURCE_DIR ""
#endif
#ifndef BITNET_EXT_MLX_INCLUDE_DIR
#define BITNET_EXT_MLX_INCLUDE_DIR ""
#endif

namespace bitnet_ext::metal {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMetallibName = "bitnet_ext"; // bitnet_ext.metallib (cmake/metal.cmake)

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

bool is_dir(const std::string& p) {
  std::error_code ec;
  return !p.empty() && fs::is_directory(p, ec);
}

bool is_file(const std::string& p) {
  std::error_code ec;
  return !p.empty() && fs::is_regular_file(p, ec);
}

// The directory of the loaded image (shared library) that contains `symbol`.
std::string image_dir(const void* symbol) {
  Dl_info info;
  if (!dladdr(symbol, &info) || info.dli_fname == nullptr) {
    return {};
  }
  return fs::path(info.dli_fname).parent_path().string();
}

// MLX's include directory (the shaders may include mlx/backend/metal/kernels/*.h):
// <site-packages>/mlx/include next to <site-packages>/mlx/lib/libmlx.dylib, else
// the one this extension was built against.
std::string mlx_include_dir() {
  std::string lib_dir = image_dir(reinterpret_cast<const void*>(&mx::metal::is_available));
  if (!lib_dir.empty()) {
    std::string inc = (fs::path(lib_dir).parent_path() / "include").string();
    if (is_dir(inc + "/mlx/backend/metal/kernels")) {
      return inc;
    }
  }
  return is_dir(BITNET_EXT_MLX_INCLUDE_DIR) ? std::string(BITNET_EXT_MLX_INCLUDE_DIR) : std::string();
}

KernelSource read_kernel_source() {
  KernelSource s;
  std::string jit = env("BITNET_EXT_METAL_JIT");
  std::string flag = lower(jit);
  if (flag.empty() || flag == "0" || flag == "false" || flag == "off" || flag == "no") {
    std::string path = env("BITNET_EXT_METALLIB");
    s.metallib = path.empty() ? current_binary_dir() + "/" + kMetallibName + ".metallib" : path;
    return s;
  }
  s.jit = true;
  if (flag == "1" || flag == "true" || flag == "on" || flag == "yes") {
    std::string built_from = BITNET_EXT_KERNELS_SOURCE_DIR;
    std::string installed = current_binary_dir() + "/kernels";
    if (is_dir(built_from)) {
      s.kernels_dir = built_from;
    } else if (is_dir(installed)) {
      s.kernels_dir = installed;
    } else {
      throw std::runtime_error(
          "bitnet_ext: BITNET_EXT_METAL_JIT=" + jit + " but neither the source tree's kernels/ (" +
          built_from + ") nor the installed copy (" + installed +
          ") exists; set BITNET_EXT_METAL_JIT to the path of a kernels/ directory.");
    }
  } else {
    if (!is_dir(jit)) {
      throw std::runtime_error(
          "bitnet_ext: BITNET_EXT_METAL_JIT=" + jit +
          " is neither a flag (1/0) nor an existing kernels directory.");
    }
    s.kernels_dir = jit;
  }
  s.kernels_dir = fs::absolute(s.kernels_dir).lexically_normal().string();
  s.include_dirs.push_back(s.kernels_dir);
  s.include_dirs.push_back(fs::path(s.kernels_dir).parent_path().string());
  std::string extra = env("BITNET_EXT_METAL_JIT_INCLUDE");
  std::stringstream ss(extra);
  for (std::string d; std::getline(ss, d, ':');) {
    if (!d.empty()) {
      s.include_dirs.push_back(d);
    }
  }
  std::string mlx_inc = mlx_include_dir();
  if (!mlx_inc.empty()) {
    s.include_dirs.push_back(mlx_inc);
  }
  return s;
}

// An autorelease pool for the Objective-C objects metal-cpp hands back
// autoreleased (functionNames()). MLX's own helper is not exported.
struct ScopedPool {
  NS::AutoreleasePool* pool = NS::AutoreleasePool::alloc()->init();
  ~ScopedPool() {
    pool->release();
  }
};

// ------------------------------- metallib mode -------------------------------

MTL::Library* load_metallib(mx::metal::Device& d) {
  const std::string& path = kernel_source().metallib;
  if (!is_file(path)) {
    throw std::runtime_error(
        "bitnet_ext: the Metal kernel library " + path +
        " is missing (the wheel is incomplete, or this build skipped cmake/metal.cmake). "
        "Reinstall bitnet_ext, set BITNET_EXT_METAL_JIT=1 to compile the shaders at run time, "
        "or run on the CPU (stream=mx.cpu).");
  }
  // A path ending in .metallib is loaded as it is (mlx/backend/metal/device.cpp, load_library);
  // the library is cached under kMetallibName for the life of the process.
  return d.get_library(kMetallibName, path);
}

// --------------------------------- JIT mode ----------------------------------

struct JitLibraries {
  std::mutex mutex;
  std::vector<std::string> files; // kernels/*.metal, sorted
  std::unordered_map<std::string, bool> compiled; // file -> compiled yet
  std::unordered_map<std::string, MTL::Library*> kernel_library; // host_name -> library
};

JitLibraries& jit_libraries() {
  static JitLibraries libs;
  return libs;
}

std::vector<std::string> list_metal_files(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".metal") {
      files.push_back(e.path().string());
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

// Compiles one .metal file (once per process; MLX caches the library by name)
// and records the kernels it holds.
void compile_jit_file(mx::metal::Device& d, JitLibraries& libs, const std::string& file) {
  if (libs.compiled[file]) {
    return;
  }
  const auto& src = kernel_source();
  std::string lib_name = "bitnet_ext_jit:" + file;
  MTL::Library* lib = nullptr;
  try {
    lib = d.get_library(lib_name, [&]() {
      JitSource js = expand_metal_source(file, src.include_dirs);
      return js.text;
    });
  } catch (const std::exception& e) {
    throw std::runtime_error(
        std::string("bitnet_ext: BITNET_EXT_METAL_JIT: compiling ") + file + " failed:\n" + e.what());
  }
  libs.compiled[file] = true;
  ScopedPool pool;
  NS::Array* names = lib->functionNames();
  for (NS::UInteger i = 0; names != nullptr && i < names->count(); ++i) {
    auto* n = names->object<NS::String>(i);
    libs.kernel_library.emplace(std::string(n->utf8String()), lib);
  }
}

MTL::Library* jit_library_for(mx::metal::Device& d, const std::string& name, const std::string& hint) {
  auto& libs = jit_libraries();
  std::lock_guard<std::mutex> lock(libs.mutex);
  if (auto it = libs.kernel_library.find(name); it != libs.kernel_library.end()) {
    return it->second;
  }
  const auto& src = kernel_source();
  if (libs.files.empty()) {
    libs.files = list_metal_files(src.kernels_dir);
    if (libs.files.empty()) {
      throw std::runtime_error("bitnet_ext: BITNET_EXT_METAL_JIT: no .metal files in " + src.kernels_dir);
    }
  }
  // The hinted file first, then every other one until the kernel turns up.
  std::vector<std::string> order;
  if (!hint.empty()) {
    std::string hinted = (fs::path(src.kernels_dir) / hint).string();
    if (std::find(libs.files.begin(), libs.files.end(), hinted) != libs.files.end()) {
      order.push_back(hinted);
    }
  }
  for (const auto& f : libs.files) {
    if (order.empty() || f != order.front()) {
      order.push_back(f);
    }
  }
  for (const auto& f : order) {
    compile_jit_file(d, libs, f);
    if (auto it = libs.kernel_library.find(name); it != libs.kernel_library.end()) {
      return it->second;
    }
  }
  std::ostringstream msg;
  msg << "bitnet_ext: BITNET_EXT_METAL_JIT: no kernel named '" << name << "' in " << src.kernels_dir
      << "/*.metal (" << libs.kernel_library.size() << " kernels found). Is it instantiated with "
      << "[[host_name(\"" << name << "\")]]?";
  throw std::runtime_error(msg.str());
}

} // namespace

const std::string& current_binary_dir() {
  static const std::string dir = []() {
    std::string d = image_dir(reinterpret_cast<const void*>(&current_binary_dir));
    if (d.empty()) {
      throw std::runtime_error("bitnet_ext: cannot locate the extension binary (dladdr failed).");
    }
    return d;
  }();
  return dir;
}

const KernelSource& kernel_source() {
  static const KernelSource s = read_kernel_source();
  return s;
}

MTL::ComputePipelineState* get_kernel(
    mx::metal::Device& d,
    const std::string& name,
    const std::string& source_hint) {
  const auto& src = kernel_source();
  MTL::Library* lib = src.jit ? jit_library_for(d, name, source_hint) : load_metallib(d);
  try {
    return d.get_kernel(name, lib);
  } catch (const std::exception& e) {
    std::string where = src.jit ? "the shaders compiled from " + src.kernels_dir : src.metallib;
    throw std::runtime_error(
        "bitnet_ext: cannot make the Metal pipeline for kernel '" + name + "' from " + where +
        (src.jit ? std::string() : std::string(" (is the metallib older than the launch plan? rebuild, or "
                                               "set BITNET_EXT_METAL_JIT=1)")) +
        ":\n" + e.what());
  }
}

} // namespace bitnet_ext::metal

#endif // _METAL_
