#include "common/sigv4/sigv4.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fleetcanary {
namespace sigv4 {
namespace {

using ::testing::HasSubstr;

// Constants of AWS's SigV4 test suite (see its README / readme.txt files).
constexpr char kAccessKeyId[] = "AKIDEXAMPLE";
constexpr char kSecret[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr char kRegion[] = "us-east-1";
constexpr char kService[] = "service";
constexpr char kSessionToken[] =
    "AQoDYXdzEPT//////////"
    "wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIe"
    "oIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsb"
    "urEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+"
    "xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4"
    "rvx3iSIlTJabIQwj2ICCR/oLxBA==";

std::filesystem::path SuiteRoot() {
  return std::filesystem::path(FLEETCANARY_SOURCE_DIR) /
         "tests/testdata/aws-sig-v4-test-suite/aws-sig-v4-test-suite";
}

std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A request parsed from a suite .req/.sreq file. Owns its strings.
struct ParsedRequest {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;

  std::vector<HeaderView> Views() const {
    std::vector<HeaderView> views;
    for (const auto& [name, value] : headers) views.push_back({name, value});
    return views;
  }
};

// The suite's format: "METHOD TARGET HTTP/1.1", "Name:value" lines, then an
// empty line and the body. The target may contain spaces. A line starting
// with whitespace continues the previous header; the suite expects each
// continuation line as one more value of that header (joined with ",").
ParsedRequest ParseSuiteRequest(const std::string& text) {
  ParsedRequest req;
  std::string head = text;
  size_t blank = text.find("\n\n");
  if (blank != std::string::npos) {
    head = text.substr(0, blank);
    req.body = text.substr(blank + 2);
  }
  std::vector<std::string> lines = absl::StrSplit(head, '\n');
  const std::string& request_line = lines[0];
  size_t sp = request_line.find(' ');
  size_t version = request_line.rfind(" HTTP/");
  req.method = request_line.substr(0, sp);
  req.target = request_line.substr(sp + 1, version - sp - 1);
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      req.headers.emplace_back(req.headers.back().first,
                               std::string(absl::StripAsciiWhitespace(line)));
      continue;
    }
    size_t colon = line.find(':');
    req.headers.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  return req;
}

struct SuiteCase {
  std::string name;  // Relative folder, e.g. "normalize-path/get-slash".
  std::filesystem::path dir;
  std::string Read(const char* ext) const {
    return ReadFile(dir / (dir.filename().string() + ext));
  }
};

void PrintTo(const SuiteCase& c, std::ostream* os) { *os << c.name; }

// Every folder of the suite that holds a case (one .req file), at any depth.
std::vector<SuiteCase> AllCases() {
  std::vector<SuiteCase> cases;
  if (!std::filesystem::exists(SuiteRoot())) return cases;
  for (const auto& entry :
       std::filesystem::recursive_directory_iterator(SuiteRoot())) {
    if (entry.path().extension() != ".req") continue;
    SuiteCase c;
    c.dir = entry.path().parent_path();
    c.name = std::filesystem::relative(c.dir, SuiteRoot()).generic_string();
    cases.push_back(c);
  }
  std::sort(
      cases.begin(), cases.end(),
      [](const SuiteCase& a, const SuiteCase& b) { return a.name < b.name; });
  return cases;
}

absl::Time SuiteTime() {
  return absl::FromCivil(absl::CivilSecond(2015, 8, 30, 12, 36, 0),
                         absl::UTCTimeZone());
}

bool UsesSessionToken(const SuiteCase& c) {
  return absl::StartsWith(c.name, "post-sts-token/");
}

// Known errata of AWS's published suite, reproduced exactly rather than
// skipped. In both x-www-form-urlencoded cases the .creq signs Content-Length,
// but the .sts, .authz and .sreq were produced from the request without it.
// In "-parameters" the .sts/.sreq signature was moreover computed over
// Content-Type "...; charset=utf8" (the .req says "utf-8"), and its .authz
// lists content-length in SignedHeaders next to that signature (its .sreq
// does not). The test checks the .creq as published, and the .sts/.authz
// with exactly these deviations applied.
struct Erratum {
  bool sts_without_content_length = false;
  std::string sts_content_type;      // Non-empty: signed instead.
  std::string authz_signed_headers;  // Non-empty: as printed in .authz.
};

Erratum ErratumFor(const SuiteCase& c) {
  Erratum e;
  if (c.name == "post-x-www-form-urlencoded") {
    e.sts_without_content_length = true;
  } else if (c.name == "post-x-www-form-urlencoded-parameters") {
    e.sts_without_content_length = true;
    e.sts_content_type = "application/x-www-form-urlencoded; charset=utf8";
    e.authz_signed_headers = "content-length;content-type;host;x-amz-date";
  }
  return e;
}

// Applies the erratum's Content-Type to a parsed request.
void ApplyContentType(const Erratum& e, ParsedRequest* req) {
  if (e.sts_content_type.empty()) return;
  for (auto& [name, value] : req->headers) {
    if (absl::EqualsIgnoreCase(name, "content-type"))
      value = e.sts_content_type;
  }
}

Credentials SuiteCredentials(const SuiteCase& c) {
  Credentials creds{kAccessKeyId, kSecret, ""};
  if (UsesSessionToken(c)) creds.session_token = kSessionToken;
  return creds;
}

SigningParams SuiteParams(const SuiteCase& c) {
  SigningParams params;
  params.service = kService;
  params.region = kRegion;
  params.time = SuiteTime();
  // "post-sts-header-after": the token is added after signing.
  params.sign_security_token = !absl::EndsWith(c.name, "post-sts-header-after");
  return params;
}

class AwsSuiteTest : public ::testing::TestWithParam<SuiteCase> {};

TEST_P(AwsSuiteTest, CanonicalRequestStringToSignAndAuthorization) {
  const SuiteCase& c = GetParam();
  ParsedRequest parsed = ParseSuiteRequest(c.Read(".req"));
  std::vector<HeaderView> headers = parsed.Views();
  HttpRequestView req{parsed.method, parsed.target, headers, parsed.body, ""};

  SigningParams params = SuiteParams(c);
  absl::StatusOr<SigningResult> full =
      SignRequest(req, SuiteCredentials(c), params);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->canonical_request, c.Read(".creq"));

  const Erratum erratum = ErratumFor(c);
  if (erratum.sts_without_content_length) {
    params.unsigned_headers = {"Content-Length"};
  }
  ApplyContentType(erratum, &parsed);
  headers = parsed.Views();
  req.headers = headers;
  absl::StatusOr<SigningResult> result =
      SignRequest(req, SuiteCredentials(c), params);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->string_to_sign, c.Read(".sts"));
  std::string authz = result->authorization;
  if (!erratum.authz_signed_headers.empty()) {
    authz.replace(authz.find(result->signed_headers),
                  result->signed_headers.size(), erratum.authz_signed_headers);
  }
  EXPECT_EQ(authz, c.Read(".authz"));
  // The .sreq carries exactly the Authorization we compute.
  ParsedRequest sreq = ParseSuiteRequest(c.Read(".sreq"));
  for (const auto& [name, value] : sreq.headers) {
    if (name == "Authorization") {
      EXPECT_EQ(absl::StripAsciiWhitespace(value), result->authorization);
    }
  }
  // The sts must hash the canonical request it was built from.
  EXPECT_EQ(
      result->string_to_sign.substr(result->string_to_sign.rfind('\n') + 1),
      Sha256Hex(result->canonical_request));
}

TEST_P(AwsSuiteTest, SignedRequestFromSuiteVerifies) {
  const SuiteCase& c = GetParam();
  ParsedRequest parsed = ParseSuiteRequest(c.Read(".sreq"));
  ApplyContentType(ErratumFor(c), &parsed);
  std::vector<HeaderView> headers = parsed.Views();
  HttpRequestView req{parsed.method, parsed.target, headers, parsed.body, ""};
  Credentials creds = SuiteCredentials(c);
  EXPECT_TRUE(VerifyRequest(req, creds, kService, kRegion, SuiteTime(),
                            absl::Minutes(5))
                  .ok())
      << VerifyRequest(req, creds, kService, kRegion, SuiteTime(),
                       absl::Minutes(5));

  // Any change to the method, path or body breaks it.
  HttpRequestView other_method = req;
  other_method.method = req.method == "GET" ? "POST" : "GET";
  EXPECT_TRUE(absl::IsPermissionDenied(VerifyRequest(
      other_method, creds, kService, kRegion, SuiteTime(), absl::Minutes(5))));
  std::string other_target = absl::StrCat("/x", parsed.target);
  HttpRequestView moved = req;
  moved.target = other_target;
  EXPECT_TRUE(absl::IsPermissionDenied(VerifyRequest(
      moved, creds, kService, kRegion, SuiteTime(), absl::Minutes(5))));
  HttpRequestView other_body = req;
  other_body.body = "tampered";
  EXPECT_TRUE(absl::IsPermissionDenied(VerifyRequest(
      other_body, creds, kService, kRegion, SuiteTime(), absl::Minutes(5))));
}

INSTANTIATE_TEST_SUITE_P(EveryCase, AwsSuiteTest,
                         ::testing::ValuesIn(AllCases()),
                         [](const ::testing::TestParamInfo<SuiteCase>& info) {
                           std::string name = info.param.name;
                           for (char& ch : name) {
                             if (!absl::ascii_isalnum(
                                     static_cast<unsigned char>(ch)))
                               ch = '_';
                           }
                           return name;
                         });

TEST(AwsSuite, EveryCaseFolderIsCovered) {
  std::vector<SuiteCase> cases = AllCases();
  // 31 cases in the published suite, including the normalize-path and
  // post-sts-token subfolders.
  EXPECT_EQ(cases.size(), 31u);
  std::set<std::string> names;
  for (const SuiteCase& c : cases) names.insert(c.name);
  EXPECT_TRUE(names.count("normalize-path/get-relative-relative"));
  EXPECT_TRUE(names.count("post-sts-token/post-sts-header-before"));
  EXPECT_TRUE(names.count("get-utf8"));
  // Licence files are vendored with the data.
  EXPECT_TRUE(std::filesystem::exists(SuiteRoot().parent_path() / "LICENSE"));
  EXPECT_TRUE(std::filesystem::exists(SuiteRoot().parent_path() / "NOTICE"));
}

TEST(SigningKey, MatchesAwsDocumentationExample) {
  // "Examples of how to derive a signing key for Signature Version 4".
  EXPECT_EQ(absl::BytesToHexString(
                DeriveSigningKey("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                 "20120215", "us-east-1", "iam")),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

TEST(Canonical, UriAndQueryRules) {
  EXPECT_EQ(CanonicalUri("", "lambda"), "/");
  EXPECT_EQ(CanonicalUri("/a/./b/../c//d/", "lambda"), "/a/c/d/");
  // Already-encoded input is encoded again (non-S3 double encoding).
  EXPECT_EQ(CanonicalUri("/a%20b", "lambda"), "/a%2520b");
  EXPECT_EQ(CanonicalUri("/a%20b//c", "s3"), "/a%20b//c");
  EXPECT_EQ(CanonicalQuery("b=2&a=x%20y&a=x&c"), "a=x&a=x%20y&b=2&c=");
  EXPECT_EQ(CanonicalQuery("k=a+b&e=%2F"), "e=%2F&k=a%2Bb");
  EXPECT_EQ(CanonicalQuery(""), "");
  EXPECT_EQ(UriEncode("a/b c~", true), "a/b%20c~");
  EXPECT_EQ(UriEncode("a/b", false), "a%2Fb");
}

TEST(AmzDate, FormatAndParse) {
  EXPECT_EQ(FormatAmzDate(SuiteTime()), "20150830T123600Z");
  absl::StatusOr<absl::Time> t = ParseAmzDate("20150830T123600Z");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, SuiteTime());
  EXPECT_TRUE(absl::IsInvalidArgument(ParseAmzDate("2015-08-30").status()));
  EXPECT_TRUE(
      absl::IsInvalidArgument(ParseAmzDate("20150830T123600").status()));
}

TEST(Credentials, FromEnvironmentNamesTheMissingVariable) {
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_SESSION_TOKEN");
  absl::StatusOr<Credentials> c = CredentialsFromEnvironment();
  EXPECT_TRUE(absl::IsNotFound(c.status()));
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("AWS_ACCESS_KEY_ID"));

  setenv("AWS_ACCESS_KEY_ID", "AKIDTEST", 1);
  c = CredentialsFromEnvironment();
  EXPECT_TRUE(absl::IsNotFound(c.status()));
  EXPECT_THAT(std::string(c.status().message()),
              HasSubstr("AWS_SECRET_ACCESS_KEY"));

  setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  c = CredentialsFromEnvironment();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->access_key_id, "AKIDTEST");
  EXPECT_EQ(c->secret_access_key, "secret");
  EXPECT_EQ(c->session_token, "");

  setenv("AWS_SESSION_TOKEN", "tok", 1);
  c = CredentialsFromEnvironment();
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->session_token, "tok");
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_SESSION_TOKEN");
}

TEST(FunctionUrl, RegionFromHost) {
  EXPECT_EQ(*RegionFromFunctionUrlHost(
                "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws"),
            "eu-west-1");
  EXPECT_EQ(*RegionFromFunctionUrlHost("X.LAMBDA-URL.US-EAST-2.ON.AWS:443"),
            "us-east-2");
  // Every partition uses on.aws: aws-us-gov and aws-cn alike.
  EXPECT_EQ(*RegionFromFunctionUrlHost("x.lambda-url.us-gov-west-1.on.aws"),
            "us-gov-west-1");
  EXPECT_EQ(*RegionFromFunctionUrlHost("x.lambda-url.cn-north-1.on.aws"),
            "cn-north-1");
  EXPECT_FALSE(RegionFromFunctionUrlHost(
                   "x.lambda-url.cn-north-1.on.amazonwebservices.com.cn")
                   .ok());
  for (const char* bad :
       {"example.com", "lambda-url.us-east-1.on.aws", "x.lambda-url..on.aws",
        "x.lambda-url.us-east-1.on.aws.evil.com", "x.lambda-url.us_east.on.aws",
        ""}) {
    EXPECT_TRUE(
        absl::IsInvalidArgument(RegionFromFunctionUrlHost(bad).status()))
        << bad;
  }
}

// A Function URL request signed by us and checked by our verifier, with the
// headers_to_add applied as a client would.
class FunctionUrlRoundTrip : public ::testing::Test {
 protected:
  void SetUp() override {
    creds_ = {"AKIDFLEET", "secret/key+material", "session-token-xyz"};
    base_ = {{"Host", "abc123.lambda-url.eu-central-1.on.aws"},
             {"x-canary-probe-id", "p-1"},
             {"User-Agent", "fleetcanary"}};
  }

  // Signs and returns the complete header list to send.
  std::vector<std::pair<std::string, std::string>> Sign(
      const std::string& target, const std::string& body) {
    std::vector<HeaderView> views;
    for (const auto& [n, v] : base_) views.push_back({n, v});
    HttpRequestView req{"GET", target, views, body, ""};
    absl::StatusOr<SigningResult> r = SignFunctionUrlRequest(req, creds_, now_);
    EXPECT_TRUE(r.ok()) << r.status();
    auto out = base_;
    for (const auto& h : r->headers_to_add) out.push_back(h);
    return out;
  }

  absl::Status Verify(const std::vector<std::pair<std::string, std::string>>& h,
                      const std::string& target, const std::string& body,
                      absl::Time now,
                      const std::string& region = "eu-central-1") {
    std::vector<HeaderView> views;
    for (const auto& [n, v] : h) views.push_back({n, v});
    HttpRequestView req{"GET", target, views, body, ""};
    return VerifyRequest(req, creds_, "lambda", region, now, absl::Minutes(5));
  }

  Credentials creds_;
  std::vector<std::pair<std::string, std::string>> base_;
  absl::Time now_ = absl::FromUnixSeconds(1706745600);
};

TEST_F(FunctionUrlRoundTrip, ValidRequestVerifies) {
  auto h = Sign("/canary?bytes=1024&seed=7", "");
  EXPECT_TRUE(Verify(h, "/canary?bytes=1024&seed=7", "", now_).ok());
  // Query order does not matter; the canonical form is sorted.
  EXPECT_TRUE(Verify(h, "/canary?seed=7&bytes=1024", "", now_).ok());
  // Within the allowed skew either way.
  EXPECT_TRUE(
      Verify(h, "/canary?bytes=1024&seed=7", "", now_ + absl::Minutes(4)).ok());
}

TEST_F(FunctionUrlRoundTrip, HeadersToAddOrderAndScope) {
  auto h = Sign("/canary", "");
  ASSERT_EQ(h.size(), base_.size() + 3);
  EXPECT_EQ(h[3].first, "X-Amz-Date");
  EXPECT_EQ(h[3].second, "20240201T000000Z");
  EXPECT_EQ(h[4].first, "X-Amz-Security-Token");
  EXPECT_EQ(h[5].first, "Authorization");
  EXPECT_THAT(h[5].second,
              HasSubstr("Credential=AKIDFLEET/20240201/eu-central-1/lambda/"
                        "aws4_request, SignedHeaders=host;user-agent;"
                        "x-amz-date;x-amz-security-token;x-canary-probe-id, "));
}

TEST_F(FunctionUrlRoundTrip, TamperingIsDenied) {
  auto h = Sign("/canary?bytes=1024", "");
  auto expect_denied = [&](const absl::Status& s, const char* reason) {
    EXPECT_TRUE(absl::IsPermissionDenied(s)) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(reason));
  };
  expect_denied(Verify(h, "/canary?bytes=1025", "", now_), "signature");
  expect_denied(Verify(h, "/canary?bytes=1024", "x", now_), "signature");
  expect_denied(Verify(h, "/canary?bytes=1024", "", now_ + absl::Minutes(6)),
                "more than 5m");
  expect_denied(Verify(h, "/canary?bytes=1024", "", now_, "us-east-1"),
                "region");

  auto changed = h;
  changed[1].second = "p-2";  // x-canary-probe-id is signed.
  expect_denied(Verify(changed, "/canary?bytes=1024", "", now_), "signature");

  auto no_token = h;
  no_token.erase(no_token.begin() + 4);
  expect_denied(Verify(no_token, "/canary?bytes=1024", "", now_),
                "X-Amz-Security-Token");

  auto no_auth = h;
  no_auth.pop_back();
  expect_denied(Verify(no_auth, "/canary?bytes=1024", "", now_),
                "missing Authorization");

  auto two_auth = h;
  two_auth.push_back(h.back());
  expect_denied(Verify(two_auth, "/canary?bytes=1024", "", now_),
                "more than one Authorization");

  auto garbled = h;
  garbled.back().second = "AWS4-HMAC-SHA256 Credential=x, Signature=00";
  expect_denied(Verify(garbled, "/canary?bytes=1024", "", now_), "Credential");

  auto other_key = h;
  std::string auth = other_key.back().second;
  auth.replace(auth.find("AKIDFLEET"), 9, "AKIDOTHER");
  other_key.back().second = auth;
  expect_denied(Verify(other_key, "/canary?bytes=1024", "", now_),
                "unknown access key");

  // Unsigned headers may be added freely (proxies, libcurl's Accept).
  auto extra = h;
  extra.emplace_back("Accept", "*/*");
  EXPECT_TRUE(Verify(extra, "/canary?bytes=1024", "", now_).ok());
}

TEST_F(FunctionUrlRoundTrip, PayloadHashHeaderMustMatchBody) {
  std::vector<HeaderView> views;
  for (const auto& [n, v] : base_) views.push_back({n, v});
  HttpRequestView req{"POST", "/canary", views, "hello", ""};
  SigningParams params;
  params.service = "lambda";
  params.region = "eu-central-1";
  params.time = now_;
  params.add_content_sha256_header = true;
  absl::StatusOr<SigningResult> r = SignRequest(req, creds_, params);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->headers_to_add[1].first, "X-Amz-Content-Sha256");
  EXPECT_EQ(r->headers_to_add[1].second, Sha256Hex("hello"));
  auto h = base_;
  for (const auto& x : r->headers_to_add) h.push_back(x);
  std::vector<HeaderView> hv;
  for (const auto& [n, v] : h) hv.push_back({n, v});
  HttpRequestView received{"POST", "/canary", hv, "hello", ""};
  EXPECT_TRUE(VerifyRequest(received, creds_, "lambda", "eu-central-1", now_,
                            absl::Minutes(5))
                  .ok());
  received.body = "hellO";
  absl::Status s = VerifyRequest(received, creds_, "lambda", "eu-central-1",
                                 now_, absl::Minutes(5));
  EXPECT_TRUE(absl::IsPermissionDenied(s));
  EXPECT_THAT(std::string(s.message()), HasSubstr("X-Amz-Content-Sha256"));
}

TEST(SignRequest, BadInputNamesTheField) {
  std::vector<HeaderView> host = {{"Host", "example.com"}};
  Credentials creds{"AKID", "secret", ""};
  SigningParams params;
  params.service = "lambda";
  params.region = "us-east-1";
  params.time = absl::UnixEpoch();
  auto msg = [](const absl::StatusOr<SigningResult>& r) {
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
    return std::string(r.status().message());
  };
  EXPECT_THAT(msg(SignRequest({"", "/", host, "", ""}, creds, params)),
              HasSubstr("method"));
  EXPECT_THAT(msg(SignRequest({"GET", "canary", host, "", ""}, creds, params)),
              HasSubstr("target"));
  EXPECT_THAT(msg(SignRequest({"GET", "/", {}, "", ""}, creds, params)),
              HasSubstr("Host"));
  EXPECT_THAT(
      msg(SignRequest({"GET", "/", host, "", ""}, {"", "s", ""}, params)),
      HasSubstr("access_key_id"));
  EXPECT_THAT(
      msg(SignRequest({"GET", "/", host, "", ""}, {"AKID", "", ""}, params)),
      HasSubstr("secret_access_key"));
  SigningParams bad_region = params;
  bad_region.region = "us/east";
  EXPECT_THAT(msg(SignRequest({"GET", "/", host, "", ""}, creds, bad_region)),
              HasSubstr("region"));
  // Function URL helper without an explicit region needs a Function URL host.
  EXPECT_TRUE(
      absl::IsInvalidArgument(SignFunctionUrlRequest({"GET", "/", host, "", ""},
                                                     creds, absl::UnixEpoch())
                                  .status()));
  EXPECT_TRUE(SignFunctionUrlRequest({"GET", "/", host, "", ""}, creds,
                                     absl::UnixEpoch(), "us-east-1")
                  .ok());
}

}  // namespace
}  // namespace sigv4
}  // namespace fleetcanary
