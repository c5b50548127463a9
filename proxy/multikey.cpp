#include "proxy/multikey.hpp"

#include <unordered_map>

#include "proxy/resp/reply_reader.hpp"

namespace keygate::proxy {

std::optional<MergeKind> splitKindOf(std::string_view name) {
  if (name == "mget") return MergeKind::kValues;
  if (name == "mset") return MergeKind::kAllOk;
  if (name == "del" || name == "unlink" || name == "exists" || name == "touch") {
    return MergeKind::kSum;
  }
  return std::nullopt;
}

SplitPlan splitBySlot(MergeKind kind, std::span<const std::string_view> argv, SlotFunction slotOf) {
  SplitPlan plan;
  plan.kind = kind;
  const std::size_t step = kind == MergeKind::kAllOk ? 2 : 1;
  std::vector<std::vector<std::uint32_t>> argIndexes;  // per part: argv positions of its keys
  std::unordered_map<std::uint16_t, std::size_t> partOfSlot;
  for (std::size_t i = 1; i + step - 1 < argv.size(); i += step) {
    const std::uint16_t slot = slotOf(argv[i]);
    auto [it, fresh] = partOfSlot.try_emplace(slot, plan.parts.size());
    if (fresh) {
      plan.parts.push_back(SplitPart{slot, {}, {}});
      argIndexes.emplace_back();
    }
    plan.parts[it->second].keyOrder.push_back(static_cast<std::uint32_t>(plan.keyCount++));
    argIndexes[it->second].push_back(static_cast<std::uint32_t>(i));
  }
  std::vector<std::string_view> args;
  for (std::size_t p = 0; p < plan.parts.size(); ++p) {
    args.clear();
    args.push_back(argv[0]);
    for (const auto index : argIndexes[p]) {
      args.push_back(argv[index]);
      if (step == 2) args.push_back(argv[index + 1]);
    }
    resp::appendCommand(plan.parts[p].request, args);
  }
  return plan;
}

ReplyMerger::ReplyMerger(const SplitPlan& plan) : kind_(plan.kind), expected_(plan.parts.size()) {
  keyOrders_.reserve(plan.parts.size());
  for (const auto& part : plan.parts)
    keyOrders_.push_back(part.keyOrder);
  if (kind_ == MergeKind::kValues) values_.resize(plan.keyCount);
}

ReplyMerger::ReplyMerger(MergeKind kind, std::size_t parts) : kind_(kind), expected_(parts) {
  if (kind_ == MergeKind::kNonNil) values_.resize(parts);
}

bool ReplyMerger::add(std::size_t index, std::string_view frame) {
  if (index >= expected_) return complete();
  ++answered_;
  auto recordError = [&](std::string_view errorFrame) {
    if (index < errorPart_) {
      errorPart_ = index;
      error_.assign(errorFrame);
    }
  };
  const char type = frame.empty() ? 0 : frame[0];
  if (type == '-' || type == '!') {
    recordError(frame);
    return complete();
  }
  switch (kind_) {
    case MergeKind::kValues: {
      resp::ReplyReader reader(frame);
      auto header = reader.next();
      const auto& order = keyOrders_[index];
      if (!header || (header->type != '*') ||
          header->integer != static_cast<std::int64_t>(order.size())) {
        recordError("-ERR keygate: a cluster node answered MGET with an unexpected reply\r\n");
        break;
      }
      for (const auto position : order) {
        const std::size_t begin = reader.offset();
        if (!reader.next()) {
          recordError("-ERR keygate: a cluster node answered MGET with a malformed reply\r\n");
          break;
        }
        values_[position].assign(frame.substr(begin, reader.offset() - begin));
      }
      break;
    }
    case MergeKind::kSum: {
      resp::ReplyReader reader(frame);
      auto value = reader.next();
      if (!value || value->type != ':') {
        recordError("-ERR keygate: a cluster node answered with a non-integer reply\r\n");
        break;
      }
      sum_ += value->integer;
      break;
    }
    case MergeKind::kAllOk:
      if (type != '+') recordError("-ERR keygate: a cluster node did not answer with OK\r\n");
      break;
    case MergeKind::kFirst:
      if (index == 0) values_.assign(1, std::string(frame));
      break;
    case MergeKind::kNonNil:
      values_[index].assign(frame);
      break;
    case MergeKind::kAndArray:
    case MergeKind::kConcat: {
      resp::ReplyReader reader(frame);
      auto header = reader.next();
      if (!header || (header->type != '*' && header->type != '~') || header->integer < 0) {
        recordError("-ERR keygate: a cluster node answered with a non-array reply\r\n");
        break;
      }
      if (kind_ == MergeKind::kConcat) {
        concatCount_ += static_cast<std::size_t>(header->integer);
        concat_.append(frame.substr(reader.offset()));
        break;
      }
      const auto n = static_cast<std::size_t>(header->integer);
      if (!haveFlags_) {
        haveFlags_ = true;
        flags_.assign(n, 1);
      } else if (flags_.size() != n) {
        recordError("-ERR keygate: cluster nodes answered with arrays of different lengths\r\n");
        break;
      }
      for (std::size_t i = 0; i < n; ++i) {
        auto element = reader.next();
        if (!element || element->type != ':') {
          recordError("-ERR keygate: a cluster node answered with a malformed array\r\n");
          break;
        }
        if (element->integer == 0) flags_[i] = 0;
      }
      break;
    }
  }
  return complete();
}

std::string ReplyMerger::result() const {
  if (errorPart_ != SIZE_MAX) return error_;
  std::string out;
  switch (kind_) {
    case MergeKind::kValues: {
      std::size_t total = 16;
      for (const auto& v : values_)
        total += v.size();
      out.reserve(total);
      resp::appendArrayHeader(out, values_.size());
      for (const auto& v : values_)
        out.append(v);
      break;
    }
    case MergeKind::kSum:
      resp::appendInteger(out, sum_);
      break;
    case MergeKind::kAllOk:
      out = "+OK\r\n";
      break;
    case MergeKind::kFirst:
      if (!values_.empty()) out = values_.front();
      break;
    case MergeKind::kNonNil:
      for (const auto& v : values_) {
        const bool nil = v == "$-1\r\n" || v == "_\r\n" || v == "*-1\r\n";
        if (!nil) return v;
      }
      if (!values_.empty()) out = values_.front();
      break;
    case MergeKind::kAndArray:
      resp::appendArrayHeader(out, flags_.size());
      for (const auto f : flags_)
        resp::appendInteger(out, f);
      break;
    case MergeKind::kConcat:
      out.reserve(concat_.size() + 16);
      resp::appendArrayHeader(out, concatCount_);
      out.append(concat_);
      break;
  }
  return out;
}

}  // namespace keygate::proxy
