// See jit_source.h. Plain C++17; no Metal or MLX dependency.
#include "gpu/metal/jit_source.h"

#include <filesystem>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

namespace bitnet_ext::metal {

namespace fs = std::filesystem;

namespace {

bool read_file(const fs::path& p, std::string& out) {
  std::ifstream f(p, std::ios::binary);
  if (!f) {
    return false;
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  out = ss.str();
  return true;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::string cur;
  for (char c : text) {
    if (c == '\n') {
      if (!cur.empty() && cur.back() == '\r') {
        cur.pop_back();
      }
      lines.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) {
    lines.push_back(cur);
  }
  return lines;
}

size_t skip_blanks(const std::string& s, size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) {
    ++i;
  }
  return i;
}

// `# <word>` at the start of the line: returns the index after the word, or npos.
size_t directive(const std::string& line, const char* word) {
  size_t i = skip_blanks(line, 0);
  if (i >= line.size() || line[i] != '#') {
    return std::string::npos;
  }
  i = skip_blanks(line, i + 1);
  std::string w(word);
  if (line.compare(i, w.size(), w) != 0) {
    return std::string::npos;
  }
  size_t j = i + w.size();
  if (j < line.size() && (std::isalnum(static_cast<unsigned char>(line[j])) || line[j] == '_')) {
    return std::string::npos; // e.g. #include_next, #pragma onceX
  }
  return j;
}

// `#include "name"` -> name; anything else -> empty.
std::string quoted_include(const std::string& line) {
  size_t i = directive(line, "include");
  if (i == std::string::npos) {
    return {};
  }
  i = skip_blanks(line, i);
  if (i >= line.size() || line[i] != '"') {
    return {};
  }
  size_t end = line.find('"', i + 1);
  if (end == std::string::npos || end == i + 1) {
    return {};
  }
  return line.substr(i + 1, end - i - 1);
}

bool is_pragma_once(const std::string& line) {
  size_t i = directive(line, "pragma");
  if (i == std::string::npos) {
    return false;
  }
  i = skip_blanks(line, i);
  if (line.compare(i, 4, "once") != 0) {
    return false;
  }
  i = skip_blanks(line, i + 4);
  return i == line.size() || line.compare(i, 2, "//") == 0;
}

std::string canonical_key(const fs::path& p) {
  std::error_code ec;
  auto c = fs::weakly_canonical(p, ec);
  return (ec ? p.lexically_normal() : c).string();
}

std::string line_directive(int line, const std::string& file) {
  std::string escaped;
  for (char c : file) {
    if (c == '"' || c == '\\') {
      escaped.push_back('\\');
    }
    escaped.push_back(c);
  }
  return "#line " + std::to_string(line) + " \"" + escaped + "\"\n";
}

struct Expander {
  std::vector<fs::path> include_dirs;
  std::set<std::string> once_done; // canonical paths of #pragma once files already inlined
  std::set<std::string> seen; // every file inlined (for JitSource::files)
  std::set<std::string> unresolved_seen;
  JitSource out;

  void expand(const fs::path& file, int depth) {
    if (depth > 64) {
      throw std::runtime_error("bitnet_ext: Metal JIT: #include nesting deeper than 64 at " + file.string());
    }
    std::string text;
    if (!read_file(file, text)) {
      throw std::runtime_error("bitnet_ext: Metal JIT: cannot read " + file.string());
    }
    const std::string key = canonical_key(file);
    auto lines = split_lines(text);
    bool once = false;
    for (const auto& l : lines) {
      if (is_pragma_once(l)) {
        once = true;
        break;
      }
    }
    if (once) {
      if (once_done.count(key)) {
        return;
      }
      once_done.insert(key);
    }
    if (seen.insert(key).second) {
      out.files.push_back(key);
    }
    out.text += line_directive(1, key);
    for (size_t n = 0; n < lines.size(); ++n) {
      const std::string& line = lines[n];
      if (is_pragma_once(line)) {
        out.text += "\n";
        continue;
      }
      std::string name = quoted_include(line);
      if (!name.empty()) {
        fs::path found;
        std::vector<fs::path> candidates;
        candidates.push_back(file.parent_path() / name);
        for (const auto& d : include_dirs) {
          candidates.push_back(d / name);
        }
        for (const auto& c : candidates) {
          std::error_code ec;
          if (fs::is_regular_file(c, ec)) {
            found = c;
            break;
          }
        }
        if (!found.empty()) {
          expand(found, depth + 1);
          out.text += line_directive(static_cast<int>(n) + 2, key);
          continue;
        }
        if (unresolved_seen.insert(name).second) {
          out.unresolved.push_back(name);
        }
      }
      append_ascii(line);
      out.text += "\n";
    }
  }

  void append_ascii(const std::string& line) {
    for (char c : line) {
      if (static_cast<unsigned char>(c) >= 0x80) {
        out.non_ascii_bytes++;
        out.text.push_back(' ');
      } else {
        out.text.push_back(c);
      }
    }
  }
};

} // namespace

JitSource expand_metal_source(const std::string& main_file, const std::vector<std::string>& include_dirs) {
  Expander e;
  for (const auto& d : include_dirs) {
    if (!d.empty()) {
      e.include_dirs.emplace_back(d);
    }
  }
  e.out.text = "#define BITNET_EXT_METAL_JIT 1\n#define MLX_METAL_JIT 1\n";
  e.expand(fs::path(main_file), 0);
  return std::move(e.out);
}

} // namespace bitnet_ext::metal
