// Kernel registry and executed-kernel record, shared by both targets of the
// shader harness (fibers: runtime.cpp, CUDA: cuda/executor.cpp). Each target
// instantiates them with its own KernelInfo, so each has its own registry.
#pragma once

#include <cstdlib>
#include <fstream>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace bnh {

// Every instantiated kernel (Info has .name and .file), filled by static
// registrations before main.
template <class Info>
struct KernelRegistry {
  static std::vector<Info>& all() {
    static std::vector<Info> r;
    return r;
  }
  static void add(Info info) {
    for (const auto& k : all()) {
      if (k.name == info.name) {
        throw std::logic_error("kernel " + info.name + " instantiated twice (" + k.file + ", " + info.file + ")");
      }
    }
    all().push_back(std::move(info));
  }
  static const Info* find(const std::string& name) {
    for (const auto& k : all()) {
      if (k.name == name) {
        return &k;
      }
    }
    return nullptr;
  }
};

// Names of the kernels launched in this process; each launch is also appended
// to the file named by BITNET_HARNESS_RECORD (the coverage checks read it).
class ExecutedRecord {
 public:
  void add(const std::string& name) {
    std::lock_guard<std::mutex> lock(mutex_);
    names_.insert(name);
    if (const char* path = std::getenv("BITNET_HARNESS_RECORD"); path && *path) {
      std::ofstream(path, std::ios::app) << name << "\n";
    }
  }
  std::vector<std::string> list() {
    std::lock_guard<std::mutex> lock(mutex_);
    return {names_.begin(), names_.end()};
  }
  void reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    names_.clear();
  }

 private:
  std::mutex mutex_;
  std::set<std::string> names_;
};

} // namespace bnh
