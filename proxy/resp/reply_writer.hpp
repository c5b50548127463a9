#pragma once

// Appends RESP replies and commands to an output buffer, in the protocol version the client
// negotiated (2 or 3). keygate's own replies (local commands, errors) are written with these.

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace keygate::resp {

enum class Protocol : std::uint8_t { kResp2 = 2, kResp3 = 3 };

void appendSimple(std::string& out, std::string_view s);  // +s
void appendError(std::string& out, std::string_view s);   // -s (CR/LF in s become spaces)
void appendInteger(std::string& out, std::int64_t v);     // :v
void appendBulk(std::string& out, std::string_view s);    // $len s
void appendNull(std::string& out, Protocol p);            // RESP2 $-1, RESP3 _
void appendNullArray(std::string& out, Protocol p);       // RESP2 *-1, RESP3 _
void appendArrayHeader(std::string& out, std::size_t n);  // *n
void appendMapHeader(std::string& out, std::size_t pairs, Protocol p);  // RESP3 %n, RESP2 *2n
void appendSetHeader(std::string& out, std::size_t n, Protocol p);      // RESP3 ~n, RESP2 *n
void appendPushHeader(std::string& out, std::size_t n, Protocol p);     // RESP3 >n, RESP2 *n
void appendDouble(std::string& out, double v, Protocol p);  // RESP3 ,v RESP2 bulk string
void appendBool(std::string& out, bool v, Protocol p);      // RESP3 #t/#f, RESP2 :1/:0
// RESP3 =len\r\ntxt:... ; RESP2 plain bulk string. `format` is three characters, e.g. "txt".
void appendVerbatim(std::string& out, std::string_view format, std::string_view s, Protocol p);

// A command as a RESP2 multibulk request: *n $len arg ...
void appendCommand(std::string& out, std::span<const std::string_view> args);
void appendCommand(std::string& out, std::initializer_list<std::string_view> args);

}  // namespace keygate::resp
