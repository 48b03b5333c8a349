#include "common/aws/http.h"

#include <curl/curl.h>

#include <memory>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace fleetcanary {
namespace aws {
namespace {

struct WriteState {
  std::string* body;
  size_t limit;
  bool exceeded = false;
};

size_t WriteBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* state = static_cast<WriteState*>(user);
  const size_t n = size * nmemb;
  if (state->body->size() + n > state->limit) {
    state->exceeded = true;
    return 0;
  }
  state->body->append(data, n);
  return n;
}

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

absl::StatusOr<HttpReply> HttpCall(const HttpExchange& exchange) {
  InitCurlOnce();
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(),
                                                           curl_easy_cleanup);
  if (!curl) return absl::InternalError("curl_easy_init failed");
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> list(
      nullptr, curl_slist_free_all);
  for (const auto& [name, value] : exchange.headers) {
    list.reset(curl_slist_append(list.release(),
                                 absl::StrCat(name, ": ", value).c_str()));
  }
  list.reset(curl_slist_append(list.release(), "Expect:"));
  HttpReply reply;
  WriteState state{&reply.body, exchange.max_response_bytes};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, exchange.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, exchange.method.c_str());
  if (exchange.method == "POST" || exchange.method == "PUT" ||
      !exchange.body.empty()) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, exchange.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(exchange.body.size()));
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &state);
  curl_easy_setopt(
      c, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(exchange.connect_timeout)));
  curl_easy_setopt(
      c, CURLOPT_TIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(exchange.timeout)));
  const CURLcode rc = curl_easy_perform(c);
  if (state.exceeded) {
    return absl::ResourceExhaustedError(
        absl::StrCat(exchange.url, ": response larger than ",
                     exchange.max_response_bytes, " bytes"));
  }
  if (rc != CURLE_OK) {
    return absl::UnavailableError(
        absl::StrCat(exchange.url, ": ", curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  return reply;
}

absl::StatusOr<ParsedUrl> ParseHttpUrl(absl::string_view raw,
                                       absl::string_view what) {
  InitCurlOnce();
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> url(curl_url(),
                                                          curl_url_cleanup);
  const std::string text(raw);
  if (!url || curl_url_set(url.get(), CURLUPART_URL, text.c_str(), 0) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", raw.substr(0, 256), "\" is not a URL"));
  }
  auto part = [&](CURLUPart which) -> std::string {
    char* value = nullptr;
    if (curl_url_get(url.get(), which, &value, 0) != 0 || value == nullptr) {
      return "";
    }
    std::string out(value);
    curl_free(value);
    return out;
  };
  ParsedUrl out;
  out.scheme = absl::AsciiStrToLower(part(CURLUPART_SCHEME));
  if (out.scheme != "http" && out.scheme != "https") {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": \"", raw.substr(0, 256), "\": scheme must be http or https"));
  }
  std::string host = part(CURLUPART_HOST);
  if (host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": \"", raw.substr(0, 256), "\" has no host"));
  }
  const std::string port = part(CURLUPART_PORT);
  out.host_header = port.empty() ? host : absl::StrCat(host, ":", port);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  out.host = host;
  out.path = part(CURLUPART_PATH);
  if (out.path.empty()) out.path = "/";
  out.url = absl::StrCat(out.scheme, "://", out.host_header, out.path);
  return out;
}

std::string FormEncode(absl::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(value.size());
  for (unsigned char c : value) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

absl::StatusOr<std::string> FormDecode(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (size_t i = 0; i < value.size(); ++i) {
    const char c = value[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      const int hi = i + 1 < value.size() ? HexValue(value[i + 1]) : -1;
      const int lo = i + 2 < value.size() ? HexValue(value[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError("malformed %-escape");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseForm(
    absl::string_view body) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view kv : absl::StrSplit(body, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> p =
        absl::StrSplit(kv, absl::MaxSplits('=', 1));
    absl::StatusOr<std::string> name = FormDecode(p.first);
    absl::StatusOr<std::string> value = FormDecode(p.second);
    if (!name.ok()) return name.status();
    if (!value.ok()) return value.status();
    out.emplace_back(*std::move(name), *std::move(value));
  }
  return out;
}

}  // namespace aws
}  // namespace fleetcanary
