// A stand-in for {fmt}'s <fmt/format.h>, for MLX's CUDA headers only.
//
// mlx/backend/cuda/device.h includes <fmt/format.h> (through lru_cache.h),
// and the mlx-cuda wheel does not ship {fmt}. Those headers use exactly one
// thing from it: fmt::format with plain "{}" fields in error messages. This
// header provides that and nothing else; cmake/cuda.cmake puts its directory
// on the include path of our CUDA host code ahead of any installed {fmt}.
#pragma once

#include <cstddef>
#include <sstream>
#include <string>
#include <string_view>

namespace fmt {

// `pattern` with each "{}" replaced by the next argument (streamed with
// operator<<) and "{{" / "}}" by a single brace. Other field syntax is not
// supported (MLX's CUDA headers use none).
template <class... Args>
std::string format(std::string_view pattern, const Args&... args) {
  std::string fields[] = {std::string(), [](const auto& a) {
                            std::ostringstream s;
                            s << a;
                            return s.str();
                          }(args)...};
  std::string out;
  size_t next = 1;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    const bool doubled = i + 1 < pattern.size() && pattern[i + 1] == c;
    if (c == '{' && i + 1 < pattern.size() && pattern[i + 1] == '}') {
      out += next < sizeof...(Args) + 1 ? fields[next++] : std::string("{}");
      ++i;
    } else if ((c == '{' || c == '}') && doubled) {
      out += c;
      ++i;
    } else {
      out += c;
    }
  }
  return out;
}

} // namespace fmt
