#include "emulator/identity/identity.h"

#include <libxml/tree.h>
#include <libxml/xmlsave.h>

#include <memory>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/aws/http.h"
#include "common/log/log.h"
#include "common/proto/time_convert.h"
#include "nlohmann/json.hpp"

namespace fleetcanary {
namespace emulator {
namespace {

constexpr char kStsNs[] = "https://sts.amazonaws.com/doc/2011-06-15/";
constexpr char kUpper[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
constexpr char kSecret[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kImdsPrefix[] = "/latest/meta-data/iam/security-credentials/";

std::string Iso(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

void SetBody(ResponsePlan* plan, int status, std::string body,
             const char* content_type) {
  plan->status = status;
  plan->headers.emplace_back("Content-Type", content_type);
  plan->body = std::move(body);
}

void AddXml(xmlNodePtr parent, const XmlNode& node) {
  xmlNodePtr child = xmlNewTextChild(
      parent, nullptr, BAD_CAST node.name.c_str(),
      node.children.empty() ? BAD_CAST node.text.c_str() : nullptr);
  for (const XmlNode& c : node.children) AddXml(child, c);
}

}  // namespace

XmlNode& XmlNode::Add(std::string child_name, std::string child_text) {
  children.push_back(XmlNode{std::move(child_name), std::move(child_text), {}});
  return children.back();
}

std::string RenderXml(const XmlNode& root, absl::string_view xmlns) {
  std::unique_ptr<xmlDoc, decltype(&xmlFreeDoc)> doc(xmlNewDoc(BAD_CAST "1.0"),
                                                     xmlFreeDoc);
  xmlNodePtr r = xmlNewNode(nullptr, BAD_CAST root.name.c_str());
  xmlDocSetRootElement(doc.get(), r);
  const std::string ns(xmlns);
  xmlNewNs(r, BAD_CAST ns.c_str(), nullptr);
  for (const XmlNode& c : root.children) AddXml(r, c);
  xmlChar* out = nullptr;
  int size = 0;
  xmlDocDumpMemoryEnc(doc.get(), &out, &size, "UTF-8");
  std::string text(reinterpret_cast<const char*>(out), size);
  xmlFree(out);
  return text;
}

std::string QueryErrorXml(absl::string_view xmlns, absl::string_view code,
                          absl::string_view message,
                          absl::string_view request_id) {
  XmlNode root{"ErrorResponse", "", {}};
  XmlNode& error = root.Add("Error");
  error.Add("Type", absl::StartsWith(code, "Internal") ||
                            absl::StartsWith(code, "ServiceUnavailable")
                        ? "Receiver"
                        : "Sender");
  error.Add("Code", std::string(code));
  error.Add("Message", std::string(message));
  root.Add("RequestId", std::string(request_id));
  return RenderXml(root, xmlns);
}

CredentialIssuer::CredentialIssuer(
    const v1::EmulatorIdentity& config,
    std::vector<v1::EmulatorCredential> static_credentials, Clock* clock,
    uint64_t seed)
    : config_(config),
      static_(std::move(static_credentials)),
      clock_(clock),
      rng_(seed ^ 0x5757u) {}

absl::Duration CredentialIssuer::lifetime() const {
  const absl::Duration l = DurationFromProto(config_.credential_lifetime());
  return l > absl::ZeroDuration() ? l : absl::Hours(1);
}

std::string CredentialIssuer::RandomToken(size_t chars,
                                          absl::string_view alphabet) {
  std::string out;
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  for (size_t i = 0; i < chars; ++i) out.push_back(alphabet[pick(rng_)]);
  return out;
}

IssuedCredentials CredentialIssuer::Issue(absl::string_view role_arn,
                                          absl::Duration lifetime) {
  if (lifetime <= absl::ZeroDuration()) lifetime = this->lifetime();
  absl::MutexLock lock(&mu_);
  IssuedCredentials c;
  c.keys.access_key_id = absl::StrCat("ASIA", RandomToken(16, kUpper));
  c.keys.secret_access_key = RandomToken(40, kSecret);
  c.keys.session_token =
      absl::StrCat("FQoGZXIvYXdzE", RandomToken(120, kSecret));
  c.expiration =
      absl::FromUnixSeconds(absl::ToUnixSeconds(clock_->Now())) + lifetime;
  c.role_arn = std::string(role_arn);
  sessions_[c.keys.access_key_id] = c;
  ++issued_;
  return c;
}

uint64_t CredentialIssuer::issued_total() {
  absl::MutexLock lock(&mu_);
  return issued_;
}

std::vector<IssuedCredentials> CredentialIssuer::Sessions() {
  absl::MutexLock lock(&mu_);
  std::vector<IssuedCredentials> out;
  for (const auto& [key, c] : sessions_) out.push_back(c);
  return out;
}

absl::StatusOr<sigv4::Credentials> CredentialIssuer::Lookup(
    absl::string_view access_key_id, absl::string_view service) {
  for (const v1::EmulatorCredential& c : static_) {
    if (c.access_key_id() == access_key_id) {
      return sigv4::Credentials{c.access_key_id(), c.secret_access_key(),
                                c.session_token()};
    }
  }
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(std::string(access_key_id));
  if (it == sessions_.end()) return absl::NotFoundError("unknown access key");
  if (clock_->Now() >= it->second.expiration) {
    return absl::PermissionDeniedError(
        "ExpiredToken: The security token included in the request is expired");
  }
  if (!service.empty()) ++it->second.uses[std::string(service)];
  return it->second.keys;
}

void CredentialIssuer::HandleSts(const HttpRequest& request,
                                 ResponsePlan* plan) {
  std::string request_id;
  {
    absl::MutexLock lock(&mu_);
    request_id = absl::StrCat("5757", ++requests_, "-0000-4000-8000-sts");
  }
  plan->headers.emplace_back("x-amzn-RequestId", request_id);
  auto fail = [&](int status, absl::string_view code,
                  absl::string_view message) {
    SetBody(plan, status, QueryErrorXml(kStsNs, code, message, request_id),
            "text/xml");
  };
  if (request.method != "POST" || request.Path() != "/") {
    fail(400, "InvalidAction", "POST / with a form body expected");
    return;
  }
  auto form = aws::ParseForm(request.body);
  if (!form.ok()) {
    fail(400, "MalformedQueryString", form.status().message());
    return;
  }
  std::map<std::string, std::string> p(form->begin(), form->end());
  auto param = [&](const char* name) -> std::string {
    auto it = p.find(name);
    return it == p.end() ? "" : it->second;
  };
  const std::string action = param("Action");
  if (param("Version") != "2011-06-15") {
    fail(400, "InvalidParameterValue", "Version must be 2011-06-15");
    return;
  }
  absl::Duration lifetime = absl::ZeroDuration();
  if (!param("DurationSeconds").empty() && !config_.has_credential_lifetime()) {
    int64_t s = 0;
    if (!absl::SimpleAtoi(param("DurationSeconds"), &s) || s < 900 ||
        s > 43200) {
      fail(400, "ValidationError",
           "DurationSeconds must be between 900 and 43200");
      return;
    }
    lifetime = absl::Seconds(s);
  }
  // Signed requests (AssumeRole, GetCallerIdentity) are verified against
  // static and issued credentials, in the region the caller signed for.
  auto verify = [&]() -> absl::Status {
    absl::string_view auth = request.Header("Authorization");
    if (auth.empty()) {
      return absl::PermissionDeniedError(
          "MissingAuthenticationToken: Request is missing Authentication "
          "Token");
    }
    auto parsed = sigv4::ParseAuthorization(auth);
    if (!parsed.ok())
      return absl::PermissionDeniedError(parsed.status().message());
    std::vector<sigv4::HeaderView> headers;
    for (const auto& [n, v] : request.headers) headers.push_back({n, v});
    sigv4::HttpRequestView view{request.method, request.target, headers,
                                request.body, ""};
    sigv4::VerifyOptions o;
    o.service = "sts";
    o.region = parsed->region;
    o.now = clock_->Now();
    return sigv4::VerifyRequest(
        view, [this](absl::string_view k) { return Lookup(k, "sts"); }, o);
  };
  auto code_of = [](const absl::Status& s) -> std::string {
    if (absl::StartsWith(s.message(), "ExpiredToken")) return "ExpiredToken";
    if (absl::StartsWith(s.message(), "MissingAuthenticationToken")) {
      return "MissingAuthenticationToken";
    }
    if (absl::StrContains(s.message(), "unknown") ||
        absl::StrContains(s.message(), "session token")) {
      return "InvalidClientTokenId";
    }
    return "SignatureDoesNotMatch";
  };
  const std::string arn = param("RoleArn");
  if (action == "AssumeRoleWithWebIdentity" || action == "AssumeRole") {
    if (arn.empty() || param("RoleSessionName").empty()) {
      fail(400, "MissingParameter", "RoleArn and RoleSessionName are required");
      return;
    }
    if (!absl::StartsWith(arn, "arn:aws")) {
      fail(400, "ValidationError", "RoleArn is not an ARN");
      return;
    }
  }
  XmlNode root{absl::StrCat(action, "Response"), "", {}};
  if (action == "AssumeRoleWithWebIdentity") {
    const std::string token = param("WebIdentityToken");
    bool accepted = !token.empty() && config_.web_identity_tokens().empty();
    for (const std::string& t : config_.web_identity_tokens()) {
      if (t == token) accepted = true;
    }
    if (token.empty()) {
      fail(400, "MissingParameter", "WebIdentityToken is required");
      return;
    }
    if (!accepted) {
      fail(400, "InvalidIdentityToken",
           "The web identity token is not accepted");
      return;
    }
    const IssuedCredentials c = Issue(arn, lifetime);
    XmlNode& result = root.Add("AssumeRoleWithWebIdentityResult");
    XmlNode& creds = result.Add("Credentials");
    creds.Add("AccessKeyId", c.keys.access_key_id);
    creds.Add("SecretAccessKey", c.keys.secret_access_key);
    creds.Add("SessionToken", c.keys.session_token);
    creds.Add("Expiration", Iso(c.expiration));
    result.Add("SubjectFromWebIdentityToken", "system:serviceaccount:canary");
    XmlNode& user = result.Add("AssumedRoleUser");
    user.Add("AssumedRoleId",
             absl::StrCat("AROAEMULATOR:", param("RoleSessionName")));
    user.Add("Arn", absl::StrCat(arn, "/", param("RoleSessionName")));
    result.Add("Audience", "sts.amazonaws.com");
  } else if (action == "AssumeRole") {
    if (absl::Status s = verify(); !s.ok()) {
      fail(403, code_of(s), s.message());
      return;
    }
    const IssuedCredentials c = Issue(arn, lifetime);
    XmlNode& result = root.Add("AssumeRoleResult");
    XmlNode& creds = result.Add("Credentials");
    creds.Add("AccessKeyId", c.keys.access_key_id);
    creds.Add("SecretAccessKey", c.keys.secret_access_key);
    creds.Add("SessionToken", c.keys.session_token);
    creds.Add("Expiration", Iso(c.expiration));
    XmlNode& user = result.Add("AssumedRoleUser");
    user.Add("AssumedRoleId",
             absl::StrCat("AROAEMULATOR:", param("RoleSessionName")));
    user.Add("Arn", absl::StrCat(arn, "/", param("RoleSessionName")));
  } else if (action == "GetCallerIdentity") {
    if (absl::Status s = verify(); !s.ok()) {
      fail(403, code_of(s), s.message());
      return;
    }
    XmlNode& result = root.Add("GetCallerIdentityResult");
    result.Add("Account", "123456789012");
    result.Add("UserId", "AIDAEMULATOR");
    result.Add("Arn", "arn:aws:iam::123456789012:user/emulator");
  } else {
    fail(400, "InvalidAction",
         absl::StrCat("Could not find operation ", action.substr(0, 64)));
    return;
  }
  root.Add("ResponseMetadata").Add("RequestId", request_id);
  SetBody(plan, 200, RenderXml(root, kStsNs), "text/xml");
}

void CredentialIssuer::HandleImds(const HttpRequest& request,
                                  ResponsePlan* plan) {
  const absl::string_view path = request.Path();
  if (path == "/latest/api/token") {
    if (request.method != "PUT") {
      SetBody(plan, 405, "", "text/plain");
      return;
    }
    int64_t ttl = 0;
    if (!absl::SimpleAtoi(
            request.Header("X-aws-ec2-metadata-token-ttl-seconds"), &ttl) ||
        ttl < 1 || ttl > 21600) {
      SetBody(plan, 400, "", "text/plain");
      return;
    }
    absl::MutexLock lock(&mu_);
    const std::string token = absl::StrCat("AQAE", RandomToken(52, kSecret));
    imds_tokens_[token] = clock_->Now() + absl::Seconds(ttl);
    plan->headers.emplace_back("X-aws-ec2-metadata-token-ttl-seconds",
                               absl::StrCat(ttl));
    SetBody(plan, 200, token, "text/plain");
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = imds_tokens_.find(
        std::string(request.Header("X-aws-ec2-metadata-token")));
    if (it == imds_tokens_.end() || clock_->Now() >= it->second) {
      // IMDSv2 only: no token (IMDSv1) or an expired one.
      plan->status = 401;
      plan->headers.emplace_back("Content-Type", "text/plain");
      return;
    }
  }
  const std::string role =
      config_.imds_role().empty() ? "fleetcanary-agent" : config_.imds_role();
  if (request.method != "GET") {
    SetBody(plan, 405, "", "text/plain");
  } else if (path == kImdsPrefix) {
    SetBody(plan, 200, role, "text/plain");
  } else if (path == absl::StrCat(kImdsPrefix, role)) {
    const IssuedCredentials c =
        Issue(absl::StrCat("arn:aws:iam::123456789012:role/", role));
    nlohmann::json j = {{"Code", "Success"},
                        {"LastUpdated", Iso(clock_->Now())},
                        {"Type", "AWS-HMAC"},
                        {"AccessKeyId", c.keys.access_key_id},
                        {"SecretAccessKey", c.keys.secret_access_key},
                        {"Token", c.keys.session_token},
                        {"Expiration", Iso(c.expiration)}};
    SetBody(plan, 200, j.dump(2), "text/plain");
  } else {
    SetBody(plan, 404, "", "text/plain");
  }
}

void CredentialIssuer::HandleContainer(const HttpRequest& request,
                                       ResponsePlan* plan) {
  if (request.method != "GET") {
    SetBody(plan, 405, R"({"message":"GET expected"})", "application/json");
    return;
  }
  const std::string& want = config_.container_authorization_token();
  if (!want.empty() && request.Header("Authorization") != want) {
    SetBody(
        plan, 401,
        R"({"code":"AccessDeniedException","message":"bad authorization token"})",
        "application/json");
    return;
  }
  const IssuedCredentials c =
      Issue("arn:aws:iam::123456789012:role/fleetcanary-agent");
  nlohmann::json j = {{"AccessKeyId", c.keys.access_key_id},
                      {"SecretAccessKey", c.keys.secret_access_key},
                      {"Token", c.keys.session_token},
                      {"AccountId", "123456789012"},
                      {"Expiration", Iso(c.expiration)}};
  SetBody(plan, 200, j.dump(), "application/json");
}

}  // namespace emulator
}  // namespace fleetcanary
