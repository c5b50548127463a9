#pragma once

// What a request gets when Redis does not answer it in time (or is down) and its endpoint
// profile says `onFailure: open`: a reply in the shape of a miss, which claims nothing Redis
// did not say (docs/endpoints.md has the table, command class by command class).
//
//   reads     the reply Redis gives for a key that does not exist: nil for GET, nils in place
//             for MGET / HMGET, 0 for EXISTS, empty for HGETALL / SMEMBERS / LRANGE, -2 for TTL
//   writes    only to cache patterns (authority: false), and only commands whose "did nothing"
//             reply is unambiguous: SET (nil, as for SET NX/XX that did not set), SETNX,
//             HSETNX, MSETNX, EXPIRE and friends (0). A lock's SET NX therefore never answers
//             as acquired. Every other write fails closed: a DEL answered 0 would hide a
//             failed invalidation, an INCR has no miss value, and so on.
//   others    no miss shape: they fail closed.
//
// Pure: depends on the command table and the RESP writer only.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/commands/command_table.hpp"
#include "proxy/resp/reply_writer.hpp"

namespace keygate::policies {

enum class MissShape : std::uint8_t {
  kNone,         // no miss-shaped reply: the request fails closed even under `open`
  kNil,          // null bulk (RESP3 `_`)
  kNullArray,    // null array (RESP2 `*-1`, RESP3 `_`): XREAD without BLOCK
  kEmptyString,  // GETRANGE / SUBSTR of a missing key
  kZero,         // :0
  kMinusTwo,     // :-2 (TTL / PTTL / EXPIRETIME / PEXPIRETIME of a missing key)
  kEmptyArray,   // *0
  kEmptyMap,     // HGETALL: RESP2 *0, RESP3 %0
  kEmptySet,     // SMEMBERS / SINTER / ...: RESP2 *0, RESP3 ~0
  kNils,         // array of `count` nulls (MGET, HMGET)
  kZeros,        // array of `count` :0 (SMISMEMBER)
  kNoneType,     // +none (TYPE)
  kEmptyScan,    // [cursor "0", []] (HSCAN / SSCAN / ZSCAN of a missing key)
};

struct MissReply {
  MissShape shape = MissShape::kNone;
  std::uint32_t count = 0;  // kNils, kZeros: elements
};

// The fail-open reply of `argv` (resolved row `info`). `cacheWrite`: every key of the request
// is on a pattern with authority: false (writes to anything else never fail open).
MissReply missReplyOf(const commands::CommandInfo& info, std::span<const std::string_view> argv,
                      bool cacheWrite);

// Appends the reply's bytes for a client speaking `proto`.
void appendMissReply(std::string& out, MissReply reply, resp::Protocol proto);

// The documented table, for docs/endpoints.md and `keygate check --explain`: one row per
// command class, in the order the docs list them.
struct MissClass {
  std::string_view name;      // "single-value reads"
  std::string_view commands;  // "GET, GETEX, HGET, LINDEX, ..."
  std::string_view reply;     // "nil", "array of nils, one per key", "fails closed", ...
  bool write = false;         // fails open only on cache patterns
};
std::span<const MissClass> missClasses();

}  // namespace keygate::policies
