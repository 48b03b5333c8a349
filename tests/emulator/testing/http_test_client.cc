#include "tests/emulator/testing/http_test_client.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/time/clock.h"

namespace fleetcanary {
namespace testing {
namespace {

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  static_cast<CurlResult*>(user)->body.append(data, size * n);
  return size * n;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* user) {
  absl::string_view line(data, size * n);
  auto* result = static_cast<CurlResult*>(user);
  if (absl::StartsWith(line, "HTTP/")) {
    result->headers.clear();
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon != absl::string_view::npos) {
    result->headers.emplace_back(
        absl::AsciiStrToLower(line.substr(0, colon)),
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1))));
  }
  return size * n;
}

CurlResult Perform(CURL* curl, const std::string& url,
                   const CurlOptions& options) {
  CurlResult result;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, WriteBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &result);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, WriteHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &result);
  curl_easy_setopt(
      curl, CURLOPT_TIMEOUT_MS,
      static_cast<long>(absl::ToInt64Milliseconds(options.timeout)));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, options.method.c_str());
  if (!options.body.empty() || options.method == "POST" ||
      options.method == "PUT") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, options.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE,
                     static_cast<long>(options.body.size()));
  } else {
    curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, options.method.c_str());
  }
  struct curl_slist* list = nullptr;
  for (const std::string& h : options.headers) {
    list = curl_slist_append(list, h.c_str());
  }
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  if (!options.ca_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, options.ca_file.c_str());
  }
  if (options.insecure) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  const absl::Duration start = Clock::Real()->MonotonicNow();
  result.curl_code = curl_easy_perform(curl);
  result.total = Clock::Real()->MonotonicNow() - start;
  result.error = error;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &result.status);
  curl_easy_getinfo(curl, CURLINFO_NUM_CONNECTS, &result.new_connections);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);
  curl_slist_free_all(list);
  return result;
}

std::string FindHeader(
    const std::vector<std::pair<std::string, std::string>>& headers,
    absl::string_view name) {
  for (const auto& [n, v] : headers) {
    if (absl::EqualsIgnoreCase(n, name)) return v;
  }
  return "";
}

}  // namespace

std::string CurlResult::Header(absl::string_view name) const {
  return FindHeader(headers, name);
}

std::string ParsedResponse::Header(absl::string_view name) const {
  return FindHeader(headers, name);
}

CurlSession::CurlSession() : handle_(curl_easy_init()) {}
CurlSession::~CurlSession() { curl_easy_cleanup(static_cast<CURL*>(handle_)); }

CurlResult CurlSession::Fetch(const std::string& url,
                              const CurlOptions& options) {
  return Perform(static_cast<CURL*>(handle_), url, options);
}

CurlResult CurlFetch(const std::string& url, const CurlOptions& options) {
  CurlSession session;
  return session.Fetch(url, options);
}

int ConnectLoopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

RawResult RawExchange(int port, absl::string_view request,
                      const RawOptions& options) {
  RawResult result;
  const int fd = ConnectLoopback(port);
  if (fd < 0) return result;
  result.connected = true;
  Clock* clock = Clock::Real();
  const absl::Duration start = clock->MonotonicNow();
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n =
        send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  if (options.half_close) shutdown(fd, SHUT_WR);
  const absl::Duration deadline = start + options.timeout;
  char buf[65536];
  while (true) {
    const absl::Duration now = clock->MonotonicNow();
    if (now >= deadline) {
      result.timed_out = true;
      break;
    }
    pollfd p{fd, POLLIN, 0};
    int ready = poll(
        &p, 1, static_cast<int>(absl::ToInt64Milliseconds(deadline - now)) + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      result.data.append(buf, static_cast<size_t>(n));
      result.arrivals.push_back(
          {clock->MonotonicNow() - start, static_cast<size_t>(n)});
      if (options.stop_after_response && ParseResponse(result.data).complete) {
        break;
      }
      continue;
    }
    if (n == 0) {
      result.eof = true;
    } else if (errno == ECONNRESET) {
      result.reset = true;
    }
    break;
  }
  close(fd);
  return result;
}

ParsedResponse ParseResponse(absl::string_view raw) {
  ParsedResponse out;
  size_t end = raw.find("\r\n\r\n");
  if (end == absl::string_view::npos) return out;
  out.header_complete = true;
  std::vector<absl::string_view> lines =
      absl::StrSplit(raw.substr(0, end), "\r\n");
  std::vector<absl::string_view> status_parts =
      absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
  if (status_parts.size() >= 2) absl::SimpleAtoi(status_parts[1], &out.status);
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos) continue;
    out.headers.emplace_back(
        absl::AsciiStrToLower(lines[i].substr(0, colon)),
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1))));
  }
  size_t pos = end + 4;
  out.chunked =
      absl::EqualsIgnoreCase(out.Header("transfer-encoding"), "chunked");
  if (!out.chunked) {
    uint64_t length = 0;
    absl::SimpleAtoi(out.Header("content-length"), &length);
    const size_t have = std::min<size_t>(raw.size() - pos, length);
    out.body = std::string(raw.substr(pos, have));
    out.complete = have == length;
    out.message_bytes = pos + have;
    return out;
  }
  while (true) {
    size_t eol = raw.find("\r\n", pos);
    if (eol == absl::string_view::npos) break;
    uint64_t size = 0;
    if (!absl::SimpleHexAtoi(raw.substr(pos, eol - pos), &size)) break;
    if (size == 0) {
      if (raw.size() >= eol + 4 && raw.substr(eol + 2, 2) == "\r\n") {
        out.final_chunk = true;
        out.complete = true;
        out.message_bytes = eol + 4;
      }
      break;
    }
    const size_t data = eol + 2;
    if (raw.size() < data + size) {
      absl::StrAppend(&out.body, raw.substr(data));
      out.chunk_sizes.push_back(raw.size() - data);  // Partial chunk.
      break;
    }
    absl::StrAppend(&out.body, raw.substr(data, size));
    out.chunk_sizes.push_back(size);
    pos = data + size + 2;
    if (raw.size() < pos) break;
  }
  return out;
}

int PortOf(absl::string_view url) {
  size_t colon = url.rfind(':');
  if (colon == absl::string_view::npos) return 0;
  absl::string_view rest = url.substr(colon + 1);
  rest = rest.substr(0, rest.find('/'));
  int port = 0;
  absl::SimpleAtoi(rest, &port);
  return port;
}

}  // namespace testing
}  // namespace fleetcanary
