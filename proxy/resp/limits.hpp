#pragma once

#include <cstddef>

namespace keygate::resp {

// Protocol limits. Every length a peer announces is checked against these before any buffer is
// sized from it, so a hostile `*2000000000` or `$9999999999` costs nothing but an error.
struct Limits {
  std::size_t maxBulkBytes = 512u * 1024 * 1024;  // one bulk string (Redis proto-max-bulk-len)
  std::size_t maxArrayElements = 1024u * 1024;    // one multibulk request or one aggregate reply
  std::size_t maxNestingDepth = 64;               // aggregate replies inside aggregate replies
  std::size_t maxInlineBytes = 64u * 1024;        // one inline command line (Redis: 64 KiB)
};

}  // namespace keygate::resp
