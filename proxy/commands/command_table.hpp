#pragma once

// The Redis 7.0 command table: one row per command and subcommand, generated from a real
// redis-server's `COMMAND INFO` by tools/gen_command_table.py (output: command_table_data.cpp).
// Unknown commands are refused by the proxy, never guessed.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace keygate::commands {

// Command flags (from COMMAND INFO flags, plus kBlocking/kPubSub derived from ACL categories
// @blocking / @pubsub as Redis reports them). kBlocking is also set on WAIT, which holds its
// connection like BLPOP does but is not in @blocking in Redis 7.0.
enum Flag : std::uint32_t {
  kRead = 1u << 0,      // readonly
  kWrite = 1u << 1,     // write
  kAdmin = 1u << 2,     // admin
  kBlocking = 1u << 3,  // blocking / @blocking (may block the connection: BLPOP, XREAD, WAIT, ...)
  kPubSub = 1u << 4,    // pubsub / @pubsub
  kDenyOom = 1u << 5,   // denyoom
  kNoScript = 1u << 6,  // noscript
  kFast = 1u << 7,      // fast
  kMovableKeys = 1u << 8,       // movablekeys
  kNoMulti = 1u << 9,           // no_multi
  kLoading = 1u << 10,          // loading
  kStale = 1u << 11,            // stale
  kNoAuth = 1u << 12,           // no_auth
  kMayReplicate = 1u << 13,     // may_replicate (Redis 7.0's COMMAND INFO never reports it)
  kAllowBusy = 1u << 14,        // allow_busy
  kNoMandatoryKeys = 1u << 15,  // no_mandatory_keys (EVAL, FCALL, ...: zero keys is valid)
  kSkipMonitor = 1u << 16,      // skip_monitor
  kSkipSlowlog = 1u << 17,      // skip_slowlog
  kAsking = 1u << 18,           // asking
  kNoAsyncLoading = 1u << 19,   // no_async_loading
};

// ACL categories (COMMAND INFO acl_categories), one bit each.
enum AclCategory : std::uint32_t {
  kAclKeyspace = 1u << 0,
  kAclRead = 1u << 1,
  kAclWrite = 1u << 2,
  kAclSet = 1u << 3,
  kAclSortedSet = 1u << 4,
  kAclList = 1u << 5,
  kAclHash = 1u << 6,
  kAclString = 1u << 7,
  kAclBitmap = 1u << 8,
  kAclHyperLogLog = 1u << 9,
  kAclGeo = 1u << 10,
  kAclStream = 1u << 11,
  kAclPubSub = 1u << 12,
  kAclAdmin = 1u << 13,
  kAclFast = 1u << 14,
  kAclSlow = 1u << 15,
  kAclBlocking = 1u << 16,
  kAclDangerous = 1u << 17,
  kAclConnection = 1u << 18,
  kAclTransaction = 1u << 19,
  kAclScripting = 1u << 20,
};

// Command tips (COMMAND INFO tips). The nondeterministic ones matter to a cache: such replies
// (RANDOMKEY, SRANDMEMBER, TIME, ...) must not be served from a cache.
enum Tip : std::uint32_t {
  kTipNondeterministicOutput = 1u << 0,
  kTipNondeterministicOutputOrder = 1u << 1,
  kTipRequestAllNodes = 1u << 2,
  kTipRequestAllShards = 1u << 3,
  kTipRequestMultiShard = 1u << 4,
  kTipRequestSpecial = 1u << 5,
  kTipResponseOneSucceeded = 1u << 6,
  kTipResponseAllSucceeded = 1u << 7,
  kTipResponseAggLogicalAnd = 1u << 8,
  kTipResponseAggLogicalOr = 1u << 9,
  kTipResponseAggMin = 1u << 10,
  kTipResponseAggMax = 1u << 11,
  kTipResponseAggSum = 1u << 12,
  kTipResponseSpecial = 1u << 13,
};

// Key specification (Redis 7 key-specs). begin_search finds the first key, find_keys how many.
struct KeySpec {
  enum class Begin : std::uint8_t { kIndex, kKeyword, kUnknown };
  enum class Find : std::uint8_t { kRange, kKeynum, kUnknown };
  Begin begin = Begin::kUnknown;
  std::int32_t index = 0;      // kIndex: argv position of the first key
  std::string_view keyword{};  // kKeyword: keyword (e.g. "STREAMS"), matched case-insensitively
  std::int32_t startFrom = 0;  // kKeyword: argv position to start searching (<0: from end)
  Find find = Find::kUnknown;
  std::int32_t lastKey = 0;    // kRange: relative to first key; -1 = last arg, -2 = ... ;
  std::int32_t keyStep = 1;    // kRange / kKeynum: step between keys
  std::int32_t limit = 0;      // kRange with lastkey -1: divide remaining args (0 = all)
  std::int32_t keyNumIdx = 0;  // kKeynum: position of numkeys relative to begin
  std::int32_t firstKey = 0;   // kKeynum: first key relative to begin
  std::uint32_t flags = 0;     // KeyFlag bits
};

enum KeyFlag : std::uint32_t {
  kKeyRO = 1u << 0,
  kKeyRW = 1u << 1,
  kKeyOW = 1u << 2,
  kKeyRM = 1u << 3,
  kKeyAccess = 1u << 4,
  kKeyUpdate = 1u << 5,
  kKeyInsert = 1u << 6,
  kKeyDelete = 1u << 7,
  // Not a key name but hashed like one: the shard channel of SPUBLISH / SSUBSCRIBE /
  // SUNSUBSCRIBE. Skipped by extractKeys unless kIncludeNotKeys is given.
  kKeyNotKey = 1u << 8,
  kKeyIncomplete = 1u << 9,      // spec may not find all keys
  kKeyVariableFlags = 1u << 10,  // the real flags depend on the arguments (SET ... GET)
};

// Commands whose key specs cannot find the keys, or their exact flags, by themselves; Redis
// has a per-command "getkeys" procedure for them and extractKeys mirrors it. Set by the
// generator; kNone for every other row.
enum class KeysProc : std::uint8_t {
  kNone,
  kSort,      // SORT: argv[1], plus the key after the last STORE (BY/GET patterns are opaque)
  kSortRo,    // SORT_RO: argv[1]
  kMigrate,   // MIGRATE: argv[3], or with KEYS (and argv[3] == "") the keys after KEYS
  kSet,       // SET: argv[1]; RW when GET is given, OW otherwise
  kBitfield,  // BITFIELD: argv[1]; RO when only GET / OVERFLOW operations are given
};

struct CommandInfo {
  std::string_view name{};  // lowercase; subcommands as "client|setname"
  std::int32_t arity = 0;   // Redis arity: >0 exact argc, <0 at least -arity
  std::uint32_t flags = 0;  // Flag bits
  std::span<const KeySpec> keySpecs{};
  std::span<const CommandInfo> subcommands{};  // non-empty for container commands (CLIENT, ...)
  std::uint32_t aclCategories = 0;             // AclCategory bits
  std::uint32_t tips = 0;                      // Tip bits
  KeysProc keysProc = KeysProc::kNone;

  bool has(Flag f) const { return (flags & f) != 0; }
  bool inCategory(AclCategory c) const { return (aclCategories & c) != 0; }
  bool hasTip(Tip t) const { return (tips & t) != 0; }
  bool isContainer() const { return !subcommands.empty(); }
};

struct KeyRef {
  std::uint32_t argIndex = 0;  // position in argv
  std::uint32_t flags = 0;     // KeyFlag bits of the key spec that found it
};

enum class KeyStatus : std::uint8_t {
  kOk,
  kBadNumKeys,  // numkeys not an integer, negative, or larger than the arguments allow (or 0
                // where the command needs a key: all but kNoMandatoryKeys ones, e.g. EVAL)
};

class CommandTable {
 public:
  // The generated table. Immutable; safe to share across threads.
  static const CommandTable& redis70();

  // Case-insensitive lookup of a top-level command; nullptr if unknown. Never allocates.
  const CommandInfo* find(std::string_view name) const;

  // Case-insensitive lookup of a subcommand of `container` (a row of this table), e.g.
  // (CONFIG, "set"); nullptr if `container` has no such subcommand. Never allocates.
  const CommandInfo* findSubcommand(const CommandInfo& container, std::string_view sub) const;

  // Resolves argv to the row that applies: for container commands (CLIENT, CONFIG, XINFO, ...)
  // the subcommand row when argv[1] names one. Returns nullptr if the command is unknown.
  // `*unknownSubcommand` is set when argv[0] is a container but argv[1] names no subcommand;
  // the result is then nullptr too (Redis refuses those), so a caller that ignores the flag
  // still refuses the request. A container alone (argv.size() == 1) resolves to the container
  // row, whose arity then fails, as in Redis.
  const CommandInfo* resolve(std::span<const std::string_view> argv,
                             bool* unknownSubcommand = nullptr) const;

  std::size_t size() const;  // number of top-level commands

  std::span<const CommandInfo> all() const;

  // Builds the index over `rows` (and their subcommands), which must outlive the table. Rows
  // are expected to have unique names; on a duplicate the first row wins.
  explicit CommandTable(std::span<const CommandInfo> rows);

 private:
  struct Slot {
    const CommandInfo* info = nullptr;  // nullptr: empty
    std::uint32_t hash = 0;
  };

  static void insert(std::vector<Slot>& slots, const CommandInfo& info);

  std::span<const CommandInfo> rows_;
  std::vector<Slot> commands_;     // open addressing over top-level names, power-of-two size
  std::vector<Slot> subcommands_;  // open addressing over "container|sub" names
  std::size_t maxNameLength_ = 0;  // longer names cannot match: skip hashing them
  std::size_t maxSubNameLength_ = 0;
};

// Redis arity check: true when argc satisfies info.arity.
inline bool arityOk(const CommandInfo& info, std::size_t argc) {
  return info.arity >= 0 ? argc == static_cast<std::size_t>(info.arity)
                         : argc >= static_cast<std::size_t>(-info.arity);
}

// Appends the keys of `argv` (found with `info.keySpecs`) to `out`, in argv order per spec.
// Never throws; KeyStatus reports malformed numkeys the way Redis would reject them.
KeyStatus extractKeys(const CommandInfo& info, std::span<const std::string_view> argv,
                      std::vector<KeyRef>& out);

// Options for the extractKeys overload below.
enum ExtractOption : std::uint32_t {
  // Also report arguments of kKeyNotKey specs (shard channels of SPUBLISH / SSUBSCRIBE), e.g.
  // to route them by slot. COMMAND GETKEYS leaves them out, and so does the default.
  kIncludeNotKeys = 1u << 0,
};

// extractKeys with ExtractOption bits.
//
// Semantics follow Redis 7's getKeysUsingKeySpecs (src/db.c), which COMMAND GETKEYS and cluster
// routing use:
//  - Specs are evaluated in order; kKeyNotKey specs are skipped unless kIncludeNotKeys.
//  - begin: kIndex starts at argv[index]; kKeyword searches argv for the keyword (ASCII
//    case-insensitively) from startFrom forwards, or from argc + startFrom backwards when
//    startFrom < 0, and starts after it. An absent keyword is an absent optional clause: no keys.
//  - find: kRange ends at first + lastKey, or argc + lastKey when lastKey < 0, or with a limit
//    at first + (argc - first) / limit - 1 (XREAD STREAMS: half of what follows), every keyStep
//    arguments. kKeynum reads numkeys at begin + keyNumIdx, the keys start at begin + firstKey.
//  - A spec whose keys would fall outside argv contributes no keys (the command has a syntax
//    error Redis will report); the other specs' keys are still reported.
//  - numkeys must be a canonical non-negative decimal (Redis's string2ll), 0 only for
//    kNoMandatoryKeys commands, and the keys must fit in argv; otherwise kBadNumKeys and `out`
//    is left as it was.
//  - Rows with a KeysProc use the specs if they suffice and the per-command procedure
//    otherwise, as Redis does (SORT ... STORE, MIGRATE ... KEYS, SET ... GET flags).
// Every KeyRef::argIndex is >= 1 and < argv.size(). Never allocates beyond `out`'s growth.
KeyStatus extractKeys(const CommandInfo& info, std::span<const std::string_view> argv,
                      std::vector<KeyRef>& out, std::uint32_t options);

// True when the row's keys cannot all be named from argv: SORT's BY / GET patterns read keys
// derived from data. A proxy that needs every key (cluster routing, invalidation) must treat
// such commands conservatively.
bool mayAccessUndeclaredKeys(const CommandInfo& info);

}  // namespace keygate::commands
