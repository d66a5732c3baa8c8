// Run-time compilation of the shaders (BITNET_EXT_METAL_JIT): turning a
// kernels/*.metal file into one self-contained source string for
// MTL::Device::newLibrary(source), which has no include search path.
//
// Plain C++ (no Metal, no MLX): compiled into Metal builds by cmake/metal.cmake,
// and on any machine by tests/test_metal_gpu.py (test_jit_source_*), which
// checks it against the real kernels/ tree.
#pragma once

#include <string>
#include <vector>

namespace bitnet_ext::metal {

struct JitSource {
  std::string text; // the expanded source (ASCII only)
  std::vector<std::string> files; // every file inlined, main file first
  std::vector<std::string> unresolved; // quoted includes found nowhere (left as they were)
  int non_ascii_bytes = 0; // bytes >= 0x80 replaced by ' ' (MLX compiles ASCII source)
};

// Expands `main_file`:
//  * every `#include "name"` is replaced by the file's text, searched in the
//    including file's directory, then in `include_dirs` in order; a file is
//    inlined once per source when it says `#pragma once` (the pragma line
//    itself is blanked), every time otherwise; `#line` directives keep the
//    Metal compiler's error messages pointing at the original files and lines;
//  * `#include <...>` (metal_stdlib, ...) stays;
//  * an include found nowhere stays as it is and is listed in `unresolved` (it
//    may sit in a branch of #if the compiler never takes);
//  * the result starts with `#define BITNET_EXT_METAL_JIT 1` and
//    `#define MLX_METAL_JIT 1` (what MLX's own JIT sources define).
// Throws std::runtime_error when main_file cannot be read, or on include
// recursion deeper than 64.
JitSource expand_metal_source(const std::string& main_file, const std::vector<std::string>& include_dirs);

} // namespace bitnet_ext::metal
