#pragma once

// Downstream ACL users (SPEC.md section 7): who may connect, which commands each user may run,
// which registry patterns its keys and channels may belong to, and the tenant its connections
// are bound to. Compiled once from the config (config::AclConfig); immutable and shared by
// every worker. Pure: no sockets; the session asks it questions.
//
// Command rules follow Redis ACL syntax, applied in order over "nothing allowed":
//   get, +get           the command and all its subcommands
//   config|get          one subcommand
//   @read, +@read       every command in the ACL category (COMMAND INFO acl_categories)
//   @all, allcommands   every command
//   -get, -@dangerous   take them away again
// AUTH, HELLO, QUIT and RESET are always allowed (a client must be able to log in and out).
//
// Pattern rules name registry patterns by their text; '*' matches any run of characters, so
// "cpq:{tenant-<tenant>}:quote:*" covers every quote pattern and "*" every pattern. They are
// resolved against each registry version (allowedPatterns), so a reload that adds a quote
// pattern extends the users that cover it.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "config/config.hpp"
#include "proxy/commands/command_table.hpp"

namespace keygate::policies {

class CompiledRegistry;

using PasswordHash = std::array<unsigned char, 32>;  // SHA-256

// SHA-256 of `text` (OpenSSL).
PasswordHash sha256(std::string_view text);

class Acl {
 public:
  struct User {
    std::string name;
    std::string tenant;  // empty: not bound
    std::vector<PasswordHash> hashes;
    std::unordered_set<const commands::CommandInfo*> commands;  // allowed rows (top and sub)
    std::vector<std::string> patterns;                          // globs over pattern texts
  };

  // Compiles the config's users against the command table. Unknown command names and
  // categories are errors at their file position (`file`: the config file). Null on errors.
  static std::shared_ptr<const Acl> compile(const config::AclConfig& config,
                                            const std::string& file,
                                            std::vector<config::ConfigError>* errors);

  const std::vector<User>& users() const { return users_; }

  // The user `name` whose password hashes to one of its hashes, or nullptr. Hashes are compared
  // in constant time, and an unknown user costs the same hash as a known one.
  const User* authenticate(std::string_view name, std::string_view password) const;

  // AUTH, HELLO, QUIT and RESET: allowed to every user, and before authentication.
  static bool isLoginCommand(const commands::CommandInfo& top);

  // May `user` run the request whose resolved row is `info` (a subcommand row for containers
  // when argv[1] named one) and top-level row `top`?
  static bool commandAllowed(const User& user, const commands::CommandInfo& info,
                             const commands::CommandInfo& top);

  // One byte per pattern of `registry`: 1 when the user's pattern rules cover it.
  static std::vector<std::uint8_t> allowedPatterns(const User& user,
                                                   const CompiledRegistry& registry);

  // The user's pattern rules that cover no pattern of `registry` (for a warning at start-up
  // and after a reload: a typo, or a pattern removed from the registry).
  static std::vector<std::string> unmatchedRules(const User& user,
                                                 const CompiledRegistry& registry);

 private:
  std::vector<User> users_;
};

// '*' matches any run of characters (also none); everything else matches itself.
bool globMatch(std::string_view glob, std::string_view text);

}  // namespace keygate::policies
