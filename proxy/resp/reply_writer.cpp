#include "proxy/resp/reply_writer.hpp"

#include <array>
#include <charconv>
#include <cmath>

namespace keygate::resp {
namespace {

constexpr std::string_view kCrlf = "\r\n";

// Appends `prefix`, the decimal `v` and CR LF.
template <typename Int>
void appendLine(std::string& out, char prefix, Int v) {
  std::array<char, 24> buf;  // sign + 20 digits fits
  buf[0] = prefix;
  const auto res = std::to_chars(buf.data() + 1, buf.data() + buf.size() - 2, v);
  char* end = res.ptr;
  *end++ = '\r';
  *end++ = '\n';
  out.append(buf.data(), static_cast<std::size_t>(end - buf.data()));
}

void appendBulkData(std::string& out, std::string_view s) {
  appendLine(out, '$', s.size());
  out.append(s);
  out.append(kCrlf);
}

}  // namespace

void appendSimple(std::string& out, std::string_view s) {
  out.push_back('+');
  out.append(s);
  out.append(kCrlf);
}

void appendError(std::string& out, std::string_view s) {
  out.push_back('-');
  const std::size_t start = out.size();
  out.append(s);
  for (std::size_t i = start; i < out.size(); ++i) {
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  }
  out.append(kCrlf);
}

void appendInteger(std::string& out, std::int64_t v) {
  appendLine(out, ':', v);
}

void appendBulk(std::string& out, std::string_view s) {
  appendBulkData(out, s);
}

void appendNull(std::string& out, Protocol p) {
  out.append(p == Protocol::kResp3 ? std::string_view("_\r\n") : std::string_view("$-1\r\n"));
}

void appendNullArray(std::string& out, Protocol p) {
  out.append(p == Protocol::kResp3 ? std::string_view("_\r\n") : std::string_view("*-1\r\n"));
}

void appendArrayHeader(std::string& out, std::size_t n) {
  appendLine(out, '*', n);
}

void appendMapHeader(std::string& out, std::size_t pairs, Protocol p) {
  if (p == Protocol::kResp3) {
    appendLine(out, '%', pairs);
  } else {
    appendLine(out, '*', pairs * 2);
  }
}

void appendSetHeader(std::string& out, std::size_t n, Protocol p) {
  appendLine(out, p == Protocol::kResp3 ? '~' : '*', n);
}

void appendPushHeader(std::string& out, std::size_t n, Protocol p) {
  appendLine(out, p == Protocol::kResp3 ? '>' : '*', n);
}

void appendDouble(std::string& out, double v, Protocol p) {
  // Like Redis' addReplyDouble: inf, -inf and nan spelled out (printf may say "-nan"),
  // everything else as %.17g, which to_chars reproduces without depending on the locale.
  std::array<char, 32> buf;
  std::string_view text;
  if (std::isnan(v)) {
    text = "nan";
  } else if (std::isinf(v)) {
    text = v > 0 ? "inf" : "-inf";
  } else {
    const auto res =
        std::to_chars(buf.data(), buf.data() + buf.size(), v, std::chars_format::general, 17);
    text = std::string_view(buf.data(), static_cast<std::size_t>(res.ptr - buf.data()));
  }
  if (p == Protocol::kResp3) {
    out.push_back(',');
    out.append(text);
    out.append(kCrlf);
  } else {
    appendBulkData(out, text);
  }
}

void appendBool(std::string& out, bool v, Protocol p) {
  if (p == Protocol::kResp3) {
    out.append(v ? std::string_view("#t\r\n") : std::string_view("#f\r\n"));
  } else {
    out.append(v ? std::string_view(":1\r\n") : std::string_view(":0\r\n"));
  }
}

void appendVerbatim(std::string& out, std::string_view format, std::string_view s, Protocol p) {
  if (p == Protocol::kResp2) {
    appendBulkData(out, s);
    return;
  }
  // The format is exactly three bytes on the wire; anything else would break framing for the
  // client, so an ill-sized one falls back to plain text.
  if (format.size() != 3) format = "txt";
  appendLine(out, '=', s.size() + 4);
  out.append(format);
  out.push_back(':');
  out.append(s);
  out.append(kCrlf);
}

void appendCommand(std::string& out, std::span<const std::string_view> args) {
  std::size_t total = 16;
  for (std::string_view a : args)
    total += a.size() + 16;
  out.reserve(out.size() + total);
  appendLine(out, '*', args.size());
  for (std::string_view a : args)
    appendBulkData(out, a);
}

void appendCommand(std::string& out, std::initializer_list<std::string_view> args) {
  appendCommand(out, std::span<const std::string_view>(args.begin(), args.size()));
}

}  // namespace keygate::resp
