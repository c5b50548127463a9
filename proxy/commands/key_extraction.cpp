// Key extraction from argv with Redis 7 key specs (mirrors getKeysUsingKeySpecs in Redis's
// src/db.c), plus the few per-command procedures Redis uses where specs are not enough.
//
// All positions are computed in std::int64_t from argv.size(), so a hostile numkeys or a huge
// argv cannot overflow, and every emitted index is checked against argv before it is stored.

#include <cstdint>

#include "proxy/commands/command_table.hpp"

namespace keygate::commands {
namespace {

constexpr char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// Redis accepts numkeys that string2ll() parses and that are >= 0: a canonical decimal ("0",
// or no leading zero, no sign, no spaces). Values above `cap` are reported as cap + 1, so the
// caller's bounds check rejects them without overflowing.
bool parseNumKeys(std::string_view s, std::int64_t cap, std::int64_t& out) {
  constexpr std::int64_t kMaxCap = std::int64_t{1} << 40;  // keeps v * 10 + 9 in range
  if (cap > kMaxCap) cap = kMaxCap;
  if (s.empty()) return false;
  if (s == "0") {
    out = 0;
    return true;
  }
  if (s[0] < '1' || s[0] > '9') return false;  // also rejects "-n", "+n", " n", "0n"
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    if (v <= cap) v = v * 10 + (c - '0');  // once above cap, keep validating the digits only
  }
  out = v > cap ? cap + 1 : v;
  return true;
}

class Collector {
 public:
  Collector(std::span<const std::string_view> argv, std::vector<KeyRef>& out)
      : argc_(static_cast<std::int64_t>(argv.size())), out_(out) {}

  std::int64_t argc() const { return argc_; }

  void add(std::int64_t index, std::uint32_t flags) {
    if (index >= 1 && index < argc_) {
      out_.push_back(KeyRef{static_cast<std::uint32_t>(index), flags});
    }
  }

 private:
  std::int64_t argc_;
  std::vector<KeyRef>& out_;
};

// begin_search keyword: the argv position of the keyword, or -1. Same window as Redis: from
// startFrom forwards up to (excluding) the last argument, or from argc + startFrom backwards
// down to (excluding) argv[1]; either way a key must be able to follow the keyword.
std::int64_t findKeyword(const KeySpec& spec, std::span<const std::string_view> argv) {
  const auto argc = static_cast<std::int64_t>(argv.size());
  if (spec.startFrom > 0) {
    for (std::int64_t i = spec.startFrom; i < argc - 1; ++i) {
      if (equalsIgnoreCase(argv[static_cast<std::size_t>(i)], spec.keyword)) return i;
    }
    return -1;
  }
  const std::int64_t start = argc + spec.startFrom;
  if (start >= argc) return -1;
  for (std::int64_t i = start; i > 1; --i) {
    if (equalsIgnoreCase(argv[static_cast<std::size_t>(i)], spec.keyword)) return i;
  }
  return -1;
}

enum class SpecOutcome : std::uint8_t {
  kFound,       // keys appended (possibly none: numkeys 0)
  kAbsent,      // keyword spec whose keyword is not in argv: an optional clause, no keys
  kUnusable,    // unknown spec, or keys that would fall outside argv (a syntax error)
  kBadNumKeys,  // numkeys missing, malformed, zero where a key is needed, or too large
};

// `allowNoKeys`: numkeys 0 is valid (EVAL, FCALL: no_mandatory_keys); every other keynum
// command refuses it ("numkeys should be greater than 0").
SpecOutcome applySpec(const KeySpec& spec, std::span<const std::string_view> argv, bool allowNoKeys,
                      Collector& keys) {
  const std::int64_t argc = keys.argc();
  std::int64_t first = 0;
  switch (spec.begin) {
    case KeySpec::Begin::kIndex:
      first = spec.index;
      break;
    case KeySpec::Begin::kKeyword: {
      const std::int64_t at = findKeyword(spec, argv);
      if (at < 0) return SpecOutcome::kAbsent;
      first = at + 1;
      break;
    }
    case KeySpec::Begin::kUnknown:
      return SpecOutcome::kUnusable;
  }
  if (first < 1) return SpecOutcome::kUnusable;

  const std::int64_t step = spec.keyStep > 0 ? spec.keyStep : 1;
  switch (spec.find) {
    case KeySpec::Find::kRange: {
      if (first >= argc) return SpecOutcome::kUnusable;
      std::int64_t last = 0;
      if (spec.lastKey >= 0) {
        last = first + spec.lastKey;
      } else if (spec.limit <= 0) {
        last = argc + spec.lastKey;
      } else {
        // XREAD STREAMS k1 k2 id1 id2: the keys are the first 1/limit of what follows.
        last = first + (argc - first) / spec.limit + spec.lastKey;
      }
      if (last >= argc || last < first) return SpecOutcome::kUnusable;
      for (std::int64_t i = first; i <= last; i += step)
        keys.add(i, spec.flags);
      return SpecOutcome::kFound;
    }
    case KeySpec::Find::kKeynum: {
      const std::int64_t numKeysAt = first + spec.keyNumIdx;
      if (numKeysAt < 1 || numKeysAt >= argc) return SpecOutcome::kBadNumKeys;
      std::int64_t numKeys = 0;
      if (!parseNumKeys(argv[static_cast<std::size_t>(numKeysAt)], argc, numKeys)) {
        return SpecOutcome::kBadNumKeys;
      }
      if (numKeys == 0) return allowNoKeys ? SpecOutcome::kFound : SpecOutcome::kBadNumKeys;
      const std::int64_t firstKey = first + spec.firstKey;
      if (firstKey < 1 || firstKey >= argc) return SpecOutcome::kBadNumKeys;
      // numKeys keys, `step` apart, all inside argv. (Redis 7.0 computes the last key as
      // first + numkeys - 1 whatever the step; no 7.0 command has a keynum step other than 1.)
      if (numKeys - 1 > (argc - 1 - firstKey) / step) return SpecOutcome::kBadNumKeys;
      for (std::int64_t n = 0; n < numKeys; ++n)
        keys.add(firstKey + n * step, spec.flags);
      return SpecOutcome::kFound;
    }
    case KeySpec::Find::kUnknown:
      return SpecOutcome::kUnusable;
  }
  return SpecOutcome::kUnusable;
}

bool hasVariableFlags(const CommandInfo& info) {
  for (const KeySpec& spec : info.keySpecs) {
    if ((spec.flags & kKeyVariableFlags) != 0) return true;
  }
  return false;
}

// Redis's first choice for a row with a keys procedure: the specs, if every one of them is
// usable and none that matched is incomplete (MIGRATE without KEYS). Otherwise the caller
// discards what was appended and runs the procedure.
bool specsSuffice(const CommandInfo& info, std::span<const std::string_view> argv,
                  Collector& keys) {
  for (const KeySpec& spec : info.keySpecs) {
    if ((spec.flags & kKeyNotKey) != 0) continue;
    switch (applySpec(spec, argv, info.has(kNoMandatoryKeys), keys)) {
      case SpecOutcome::kAbsent:
        continue;
      case SpecOutcome::kFound:
        if ((spec.flags & kKeyIncomplete) != 0) return false;
        continue;
      case SpecOutcome::kUnusable:
      case SpecOutcome::kBadNumKeys:
        return false;
    }
  }
  return true;
}

// --- per-command procedures (Redis: sortGetKeys, sortROGetKeys, migrateGetKeys, setGetKeys,
// bitfieldGetKeys). They reproduce Redis's parsing quirks on purpose, so the proxy and the
// server agree on which arguments are keys.

void sortKeys(std::span<const std::string_view> argv, Collector& keys) {
  keys.add(1, kKeyRO | kKeyAccess);
  std::int64_t store = -1;
  const std::int64_t argc = keys.argc();
  for (std::int64_t i = 2; i < argc; ++i) {
    const std::string_view arg = argv[static_cast<std::size_t>(i)];
    if (equalsIgnoreCase(arg, "limit")) {
      i += 2;
    } else if (equalsIgnoreCase(arg, "get") || equalsIgnoreCase(arg, "by")) {
      i += 1;
    } else if (equalsIgnoreCase(arg, "store") && i + 1 < argc) {
      store = i + 1;  // the last STORE wins, as in SORT itself; its key is not skipped
    }
  }
  if (store > 0) keys.add(store, kKeyOW | kKeyUpdate);
}

void migrateKeys(std::span<const std::string_view> argv, Collector& keys) {
  constexpr std::uint32_t kFlags = kKeyRW | kKeyAccess | kKeyDelete;
  const std::int64_t argc = keys.argc();
  if (argc < 4) return;
  for (std::int64_t i = 6; i < argc; ++i) {
    const std::string_view arg = argv[static_cast<std::size_t>(i)];
    if (equalsIgnoreCase(arg, "keys")) {
      // KEYS with a non-empty key argument is a syntax error MIGRATE reports: no keys.
      if (!argv[3].empty()) return;
      for (std::int64_t k = i + 1; k < argc; ++k)
        keys.add(k, kFlags);
      return;
    }
    if (equalsIgnoreCase(arg, "auth")) {
      i += 1;
    } else if (equalsIgnoreCase(arg, "auth2")) {
      i += 2;
    }
  }
  keys.add(3, kFlags);
}

void setKeys(std::span<const std::string_view> argv, Collector& keys) {
  for (std::size_t i = 3; i < argv.size(); ++i) {
    if (equalsIgnoreCase(argv[i], "get")) {
      keys.add(1, kKeyRW | kKeyAccess | kKeyUpdate);
      return;
    }
  }
  keys.add(1, kKeyOW | kKeyUpdate);
}

void bitfieldKeys(std::span<const std::string_view> argv, Collector& keys) {
  bool readOnly = true;
  const std::int64_t argc = keys.argc();
  for (std::int64_t i = 2; i < argc; ++i) {
    const std::int64_t remaining = argc - i - 1;
    const std::string_view arg = argv[static_cast<std::size_t>(i)];
    if (equalsIgnoreCase(arg, "get") && remaining >= 2) {
      i += 2;
    } else if (equalsIgnoreCase(arg, "overflow") && remaining >= 1) {
      i += 1;
    } else {
      readOnly = false;  // SET / INCRBY, or a syntax error: assume it writes
      break;
    }
  }
  keys.add(1, readOnly ? (kKeyRO | kKeyAccess) : (kKeyRW | kKeyAccess | kKeyUpdate));
}

}  // namespace

KeyStatus extractKeys(const CommandInfo& info, std::span<const std::string_view> argv,
                      std::vector<KeyRef>& out) {
  return extractKeys(info, argv, out, 0);
}

KeyStatus extractKeys(const CommandInfo& info, std::span<const std::string_view> argv,
                      std::vector<KeyRef>& out, std::uint32_t options) {
  Collector keys(argv, out);
  const std::size_t before = out.size();

  if (info.keysProc != KeysProc::kNone) {
    // As Redis: specs first unless their flags are unreliable, the procedure when they fail.
    if (!hasVariableFlags(info)) {
      if (specsSuffice(info, argv, keys)) return KeyStatus::kOk;
      out.resize(before);
    }
    switch (info.keysProc) {
      case KeysProc::kNone:
        break;
      case KeysProc::kSort:
        sortKeys(argv, keys);
        break;
      case KeysProc::kSortRo:
        keys.add(1, kKeyRO | kKeyAccess);
        break;
      case KeysProc::kMigrate:
        migrateKeys(argv, keys);
        break;
      case KeysProc::kSet:
        setKeys(argv, keys);
        break;
      case KeysProc::kBitfield:
        bitfieldKeys(argv, keys);
        break;
    }
    return KeyStatus::kOk;
  }

  // Unlike Redis, a spec whose keys would fall outside argv only drops its own keys, not the
  // others': PFMERGE dest (no sources) still writes dest, so dest is reported.
  const bool allowNoKeys = info.has(kNoMandatoryKeys);
  for (const KeySpec& spec : info.keySpecs) {
    if ((spec.flags & kKeyNotKey) != 0 && (options & kIncludeNotKeys) == 0) continue;
    if (applySpec(spec, argv, allowNoKeys, keys) == SpecOutcome::kBadNumKeys) {
      out.resize(before);  // all or nothing: a refused command has no keys
      return KeyStatus::kBadNumKeys;
    }
  }
  return KeyStatus::kOk;
}

bool mayAccessUndeclaredKeys(const CommandInfo& info) {
  for (const KeySpec& spec : info.keySpecs) {
    if (spec.begin == KeySpec::Begin::kUnknown || spec.find == KeySpec::Find::kUnknown) {
      return true;
    }
    if ((spec.flags & kKeyIncomplete) != 0 && info.keysProc == KeysProc::kNone) return true;
  }
  return false;
}

}  // namespace keygate::commands
