#include "policies/acl.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "policies/registry_policy.hpp"

namespace keygate::policies {

namespace {

using commands::CommandInfo;
using commands::CommandTable;

struct Category {
  std::string_view name;
  std::uint32_t bit;
};

constexpr Category kCategories[] = {
    {"keyspace", commands::kAclKeyspace},
    {"read", commands::kAclRead},
    {"write", commands::kAclWrite},
    {"set", commands::kAclSet},
    {"sortedset", commands::kAclSortedSet},
    {"list", commands::kAclList},
    {"hash", commands::kAclHash},
    {"string", commands::kAclString},
    {"bitmap", commands::kAclBitmap},
    {"hyperloglog", commands::kAclHyperLogLog},
    {"geo", commands::kAclGeo},
    {"stream", commands::kAclStream},
    {"pubsub", commands::kAclPubSub},
    {"admin", commands::kAclAdmin},
    {"fast", commands::kAclFast},
    {"slow", commands::kAclSlow},
    {"blocking", commands::kAclBlocking},
    {"dangerous", commands::kAclDangerous},
    {"connection", commands::kAclConnection},
    {"transaction", commands::kAclTransaction},
    {"scripting", commands::kAclScripting},
};

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

PasswordHash fromHex(std::string_view hex) {
  PasswordHash out{};
  const auto nibble = [](char c) {
    return static_cast<unsigned char>(c <= '9' ? c - '0' : c - 'a' + 10);
  };
  for (std::size_t i = 0; i < out.size() && 2 * i + 1 < hex.size(); ++i) {
    out[i] = static_cast<unsigned char>(nibble(hex[2 * i]) << 4 | nibble(hex[2 * i + 1]));
  }
  return out;
}

// Applies one rule to `allowed`. False when the rule names nothing known (`error` says why).
bool applyRule(std::string_view rule, std::unordered_set<const CommandInfo*>& allowed,
               std::string& error) {
  bool grant = true;
  if (!rule.empty() && (rule.front() == '+' || rule.front() == '-')) {
    grant = rule.front() == '+';
    rule.remove_prefix(1);
  }
  const std::string name = lower(rule);
  const auto& table = CommandTable::redis70();
  const auto set = [&](const CommandInfo& row) {
    if (grant) {
      allowed.insert(&row);
    } else {
      allowed.erase(&row);
    }
  };
  const auto setWithSubcommands = [&](const CommandInfo& row) {
    set(row);
    for (const auto& sub : row.subcommands)
      set(sub);
  };
  if (name == "@all" || name == "allcommands") {
    for (const auto& row : table.all())
      setWithSubcommands(row);
    return true;
  }
  if (!name.empty() && name.front() == '@') {
    const std::string_view category = std::string_view(name).substr(1);
    const auto it = std::find_if(std::begin(kCategories), std::end(kCategories),
                                 [&](const Category& c) { return c.name == category; });
    if (it == std::end(kCategories)) {
      error = "unknown ACL category '" + std::string(rule) + "'; use one of @all";
      for (const auto& c : kCategories)
        error += ", @" + std::string(c.name);
      return false;
    }
    for (const auto& row : table.all()) {
      if (row.inCategory(static_cast<commands::AclCategory>(it->bit))) set(row);
      for (const auto& sub : row.subcommands) {
        if (sub.inCategory(static_cast<commands::AclCategory>(it->bit))) set(sub);
      }
    }
    return true;
  }
  const auto bar = name.find('|');
  const CommandInfo* top = table.find(std::string_view(name).substr(0, bar));
  if (top == nullptr) {
    error = "unknown command '" + std::string(rule) +
            "' (not a Redis 7.0 command); write a command name such as get, a subcommand such "
            "as config|get, or a category such as @read";
    return false;
  }
  if (bar == std::string::npos) {
    setWithSubcommands(*top);
    return true;
  }
  const CommandInfo* sub = table.findSubcommand(*top, std::string_view(name).substr(bar + 1));
  if (sub == nullptr) {
    error = "'" + std::string(rule) + "': " + std::string(top->name) + " has no such subcommand";
    return false;
  }
  set(*sub);
  return true;
}

}  // namespace

PasswordHash sha256(std::string_view text) {
  PasswordHash out{};
  unsigned int length = 0;
  EVP_Digest(text.data(), text.size(), out.data(), &length, EVP_sha256(), nullptr);
  return out;
}

bool globMatch(std::string_view glob, std::string_view text) {
  // Iterative '*' matching with one backtrack point: linear in practice, never exponential.
  std::size_t g = 0, t = 0, star = std::string_view::npos, mark = 0;
  while (t < text.size()) {
    if (g < glob.size() && glob[g] == '*') {
      star = g++;
      mark = t;
    } else if (g < glob.size() && glob[g] == text[t]) {
      ++g;
      ++t;
    } else if (star != std::string_view::npos) {
      g = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (g < glob.size() && glob[g] == '*')
    ++g;
  return g == glob.size();
}

std::shared_ptr<const Acl> Acl::compile(const config::AclConfig& config, const std::string& file,
                                        std::vector<config::ConfigError>* errors) {
  auto acl = std::shared_ptr<Acl>(new Acl());
  bool ok = true;
  for (std::size_t i = 0; i < config.users.size(); ++i) {
    const auto& in = config.users[i];
    User user;
    user.name = in.name;
    user.tenant = in.tenant;
    for (const auto& hex : in.passwordHashes)
      user.hashes.push_back(fromHex(hex));
    for (std::size_t r = 0; r < in.commands.size(); ++r) {
      const auto& rule = in.commands[r];
      std::string error;
      if (!applyRule(rule.text, user.commands, error)) {
        ok = false;
        if (errors != nullptr) {
          errors->push_back(
              {file, rule.line, rule.column,
               "acl.users[" + std::to_string(i) + "].commands[" + std::to_string(r) + "]", error});
        }
      }
    }
    for (const auto& rule : in.patterns)
      user.patterns.push_back(rule.text);
    acl->users_.push_back(std::move(user));
  }
  if (!ok) return nullptr;
  return acl;
}

const Acl::User* Acl::authenticate(std::string_view name, std::string_view password) const {
  const PasswordHash hash = sha256(password);
  const User* found = nullptr;
  for (const auto& user : users_) {
    if (user.name == name) found = &user;
  }
  if (found == nullptr) return nullptr;
  bool match = false;
  for (const auto& candidate : found->hashes) {
    // Every hash is compared, in constant time: no early exit tells how close a guess was.
    match |= CRYPTO_memcmp(candidate.data(), hash.data(), hash.size()) == 0;
  }
  return match ? found : nullptr;
}

bool Acl::isLoginCommand(const CommandInfo& top) {
  return top.name == "auth" || top.name == "hello" || top.name == "quit" || top.name == "reset";
}

bool Acl::commandAllowed(const User& user, const CommandInfo& info, const CommandInfo& top) {
  if (isLoginCommand(top)) return true;
  return user.commands.contains(&info);
}

std::vector<std::uint8_t> Acl::allowedPatterns(const User& user, const CompiledRegistry& registry) {
  std::vector<std::uint8_t> allowed(registry.patternCount(), 0);
  for (std::size_t p = 0; p < allowed.size(); ++p) {
    const std::string& text = registry.rules(p).entry->pattern;
    allowed[p] = std::any_of(user.patterns.begin(), user.patterns.end(),
                             [&](const std::string& glob) { return globMatch(glob, text); })
                     ? 1
                     : 0;
  }
  return allowed;
}

std::vector<std::string> Acl::unmatchedRules(const User& user, const CompiledRegistry& registry) {
  std::vector<std::string> out;
  for (const auto& glob : user.patterns) {
    bool any = false;
    for (std::size_t p = 0; p < registry.patternCount() && !any; ++p)
      any = globMatch(glob, registry.rules(p).entry->pattern);
    if (!any) out.push_back(glob);
  }
  return out;
}

}  // namespace keygate::policies
