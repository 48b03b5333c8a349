#include "tests/testing/fake_cloudwatch_server.h"

#include <boost/asio.hpp>
#include <boost/beast.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace testing {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using json = nlohmann::json;

constexpr char kGetMetricData[] = "GraniteServiceVersion20100801.GetMetricData";

std::pair<int, std::string> Error(int status, const std::string& type,
                                  const std::string& message) {
  return {status, json{{"__type", type}, {"message", message}}.dump()};
}

}  // namespace

struct FakeCloudWatchServer::Impl {
  net::io_context ioc;
  tcp::acceptor acceptor{ioc};
  unsigned short port = 0;
};

FakeCloudWatchServer::FakeCloudWatchServer(const Options& options)
    : options_(options), impl_(std::make_unique<Impl>()) {
  beast::error_code ec;
  tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    ADD_FAILURE() << "fake CloudWatch server: " << ec.message();
    return;
  }
  impl_->port = impl_->acceptor.local_endpoint().port();
  thread_ = std::thread([this] { Serve(); });
}

FakeCloudWatchServer::~FakeCloudWatchServer() {
  stop_ = true;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // Wake a blocking accept().
  if (impl_->port != 0) {
    net::io_context ioc;
    tcp::socket s(ioc);
    beast::error_code ec;
    s.connect({net::ip::make_address("127.0.0.1"), impl_->port}, ec);
  }
  if (thread_.joinable()) thread_.join();
}

std::string FakeCloudWatchServer::endpoint() const {
  return absl::StrCat("http://127.0.0.1:", impl_->port, "/");
}

void FakeCloudWatchServer::Set(const std::string& function,
                               const std::string& resource,
                               const std::string& metric,
                               const std::string& stat, absl::Time t,
                               double value) {
  absl::MutexLock lock(&mu_);
  series_[{function, resource, metric, stat}][t] = value;
}

void FakeCloudWatchServer::ForceStatusCode(const std::string& status) {
  absl::MutexLock lock(&mu_);
  forced_status_ = status;
}

void FakeCloudWatchServer::FailNext(int count, int http_status,
                                    const std::string& body) {
  absl::MutexLock lock(&mu_);
  fail_count_ = count;
  fail_status_ = http_status;
  fail_body_ = body;
}

void FakeCloudWatchServer::SetHang(bool hang) {
  absl::MutexLock lock(&mu_);
  hang_ = hang;
}

std::vector<FakeCloudWatchServer::Recorded> FakeCloudWatchServer::requests() {
  absl::MutexLock lock(&mu_);
  return requests_;
}

void FakeCloudWatchServer::Serve() {
  while (!stop_) {
    tcp::socket sock(impl_->ioc);
    beast::error_code ec;
    impl_->acceptor.accept(sock, ec);
    if (stop_) break;
    if (ec) continue;
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(4 << 20);
      http::read(sock, buffer, parser, ec);
      if (ec) break;
      const auto& req = parser.get();
      std::vector<std::pair<std::string, std::string>> owned;
      for (const auto& field : req) {
        owned.emplace_back(std::string(field.name_string()),
                           std::string(field.value()));
      }
      std::vector<sigv4::HeaderView> views;
      for (const auto& [n, v] : owned) views.push_back({n, v});
      auto [status, body] =
          Handle(std::string(req.method_string()), std::string(req.target()),
                 views, req.body());
      {
        absl::MutexLock lock(&mu_);
        auto released = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return !hang_ || stopping_;
        };
        mu_.Await(absl::Condition(&released));
        if (stopping_) return;
      }
      http::response<http::string_body> res{static_cast<http::status>(status),
                                            req.version()};
      res.set(http::field::content_type, "application/x-amz-json-1.0");
      res.set("x-amzn-RequestId", "fake-request-id");
      res.keep_alive(req.keep_alive());
      res.body() = body;
      res.prepare_payload();
      http::write(sock, res, ec);
      if (ec || !res.keep_alive()) break;
    }
    sock.shutdown(tcp::socket::shutdown_both, ec);
  }
}

std::pair<int, std::string> FakeCloudWatchServer::Handle(
    const std::string& method, const std::string& target,
    const std::vector<sigv4::HeaderView>& headers, const std::string& body) {
  Recorded rec;
  for (const auto& h : headers) {
    if (absl::EqualsIgnoreCase(h.name, "x-amz-target")) {
      rec.target = std::string(h.value);
    }
    if (absl::EqualsIgnoreCase(h.name, "content-type")) {
      rec.content_type = std::string(h.value);
    }
  }
  rec.body = json::parse(body, nullptr, /*allow_exceptions=*/false);
  sigv4::HttpRequestView view{method, target, headers, body, ""};
  absl::Status verified = sigv4::VerifyRequest(
      view, options_.credentials, "monitoring", options_.region,
      options_.clock->Now(), absl::Minutes(5));
  rec.verify_error = std::string(verified.message());

  absl::MutexLock lock(&mu_);
  requests_.push_back(rec);
  if (!verified.ok()) {
    return Error(403, "SignatureDoesNotMatch", std::string(verified.message()));
  }
  if (fail_count_ > 0) {
    --fail_count_;
    return {fail_status_, fail_body_};
  }
  if (method != "POST" || target != "/") {
    return Error(404, "UnknownOperationException", "POST / only");
  }
  if (rec.target != kGetMetricData) {
    return Error(400, "UnknownOperationException", rec.target);
  }
  if (rec.content_type != "application/x-amz-json-1.0") {
    return Error(400, "SerializationException", "bad content type");
  }
  const json& req = rec.body;
  if (!req.is_object() || !req.contains("MetricDataQueries") ||
      !req["MetricDataQueries"].is_array() || !req.contains("StartTime") ||
      !req["StartTime"].is_number_integer() || !req.contains("EndTime") ||
      !req["EndTime"].is_number_integer()) {
    return Error(400, "InvalidParameterValue", "malformed request");
  }
  const absl::Time start =
      absl::FromUnixSeconds(req["StartTime"].get<int64_t>());
  const absl::Time end = absl::FromUnixSeconds(req["EndTime"].get<int64_t>());
  size_t offset = 0;
  if (req.contains("NextToken")) {
    std::string raw = req["NextToken"].get<std::string>();
    absl::string_view token = raw;
    if (!absl::ConsumePrefix(&token, "page-") ||
        !absl::SimpleAtoi(token, &offset)) {
      return Error(400, "InvalidNextToken", raw);
    }
  }

  // Every datapoint of every query, in query order then time order.
  struct Point {
    size_t query;
    absl::Time t;
    double v;
  };
  std::vector<Point> points;
  const json& queries = req["MetricDataQueries"];
  for (size_t q = 0; q < queries.size(); ++q) {
    const json& ms = queries[q]["MetricStat"];
    std::string function, resource;
    for (const json& d : ms["Metric"]["Dimensions"]) {
      if (d["Name"] == "FunctionName") function = d["Value"];
      if (d["Name"] == "Resource") resource = d["Value"];
    }
    if (ms["Metric"]["Namespace"] != "AWS/Lambda") continue;
    auto it = series_.find({function, resource,
                            ms["Metric"]["MetricName"].get<std::string>(),
                            ms["Stat"].get<std::string>()});
    if (it == series_.end()) continue;
    for (const auto& [t, v] : it->second) {
      if (t >= start && t < end) points.push_back({q, t, v});
    }
  }
  const size_t page_end = std::min(points.size(), offset + options_.page_size);
  json response;
  json& results = response["MetricDataResults"] = json::array();
  for (size_t q = 0; q < queries.size(); ++q) {
    json r = {{"Id", queries[q]["Id"]},
              {"Label", queries[q]["MetricStat"]["Metric"]["MetricName"]},
              {"Timestamps", json::array()},
              {"Values", json::array()},
              {"StatusCode", "Complete"}};
    for (size_t i = 0; i < points.size(); ++i) {
      if (points[i].query != q) continue;
      if (i >= page_end) {
        r["StatusCode"] = "PartialData";
      } else if (i >= offset) {
        r["Timestamps"].push_back(absl::ToUnixSeconds(points[i].t));
        r["Values"].push_back(points[i].v);
      }
    }
    if (!forced_status_.empty()) r["StatusCode"] = forced_status_;
    results.push_back(r);
  }
  if (page_end < points.size()) {
    response["NextToken"] = absl::StrCat("page-", page_end);
  }
  response["Messages"] = json::array();
  return {200, response.dump()};
}

}  // namespace testing
}  // namespace fleetcanary
