#include "emulator/identity/identity.h"

#include <libxml/tree.h>
#include <libxml/xmlsave.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
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

// A Query-protocol error an STS call is answered with.
struct StsError {
  int status;
  std::string code;
  std::string message;
};

// One STS call's form parameters (the first of repeated names), its Action
// and the session lifetime it asks for (zero: the configured one).
struct StsCall {
  std::map<std::string, std::string> params;
  std::string action;
  absl::Duration lifetime = absl::ZeroDuration();

  // The parameter `name`, empty when absent.
  std::string Param(const char* name) const {
    auto it = params.find(name);
    return it == params.end() ? "" : it->second;
  }
};

// Fills `call` from a POST / form body. Errors: another method or path, a
// malformed form, a Version other than 2011-06-15, a DurationSeconds outside
// [900, 43200] (ignored when `fixed_lifetime`), a role action without
// RoleArn, RoleSessionName or with a RoleArn that is not an ARN.
std::optional<StsError> ParseStsCall(const HttpRequest& request,
                                     bool fixed_lifetime, StsCall* call) {
  if (request.method != "POST" || request.Path() != "/") {
    return StsError{400, "InvalidAction", "POST / with a form body expected"};
  }
  auto form = aws::ParseForm(request.body);
  if (!form.ok()) {
    return StsError{400, "MalformedQueryString",
                    std::string(form.status().message())};
  }
  call->params = std::map<std::string, std::string>(form->begin(), form->end());
  call->action = call->Param("Action");
  if (call->Param("Version") != "2011-06-15") {
    return StsError{400, "InvalidParameterValue", "Version must be 2011-06-15"};
  }
  if (!call->Param("DurationSeconds").empty() && !fixed_lifetime) {
    int64_t s = 0;
    if (!absl::SimpleAtoi(call->Param("DurationSeconds"), &s) || s < 900 ||
        s > 43200) {
      return StsError{400, "ValidationError",
                      "DurationSeconds must be between 900 and 43200"};
    }
    call->lifetime = absl::Seconds(s);
  }
  if (call->action == "AssumeRoleWithWebIdentity" ||
      call->action == "AssumeRole") {
    const std::string arn = call->Param("RoleArn");
    if (arn.empty() || call->Param("RoleSessionName").empty()) {
      return StsError{400, "MissingParameter",
                      "RoleArn and RoleSessionName are required"};
    }
    if (!absl::StartsWith(arn, "arn:aws")) {
      return StsError{400, "ValidationError", "RoleArn is not an ARN"};
    }
  }
  return std::nullopt;
}

// The STS error code for a failed signature verification.
std::string StsAuthErrorCode(const absl::Status& s) {
  if (absl::StartsWith(s.message(), "ExpiredToken")) return "ExpiredToken";
  if (absl::StartsWith(s.message(), "MissingAuthenticationToken")) {
    return "MissingAuthenticationToken";
  }
  if (absl::StrContains(s.message(), "unknown") ||
      absl::StrContains(s.message(), "session token")) {
    return "InvalidClientTokenId";
  }
  return "SignatureDoesNotMatch";
}

// Adds <Credentials> for `c` to `result`.
void AddCredentials(const IssuedCredentials& c, XmlNode* result) {
  XmlNode& creds = result->Add("Credentials");
  creds.Add("AccessKeyId", c.keys.access_key_id);
  creds.Add("SecretAccessKey", c.keys.secret_access_key);
  creds.Add("SessionToken", c.keys.session_token);
  creds.Add("Expiration", Iso(c.expiration));
}

// Adds <AssumedRoleUser> for the call's role and session name to `result`.
void AddAssumedRoleUser(const StsCall& call, XmlNode* result) {
  XmlNode& user = result->Add("AssumedRoleUser");
  user.Add("AssumedRoleId",
           absl::StrCat("AROAEMULATOR:", call.Param("RoleSessionName")));
  user.Add("Arn", absl::StrCat(call.Param("RoleArn"), "/",
                               call.Param("RoleSessionName")));
}

// AssumeRoleWithWebIdentity: issues credentials when the token is one of
// `accepted_tokens` (any non-empty token when that list is empty) and adds
// the result to `root`.
std::optional<StsError> AnswerWebIdentity(
    const StsCall& call,
    const google::protobuf::RepeatedPtrField<std::string>& accepted_tokens,
    CredentialIssuer* issuer, XmlNode* root) {
  const std::string token = call.Param("WebIdentityToken");
  bool accepted = !token.empty() && accepted_tokens.empty();
  for (const std::string& t : accepted_tokens) {
    if (t == token) accepted = true;
  }
  if (token.empty()) {
    return StsError{400, "MissingParameter", "WebIdentityToken is required"};
  }
  if (!accepted) {
    return StsError{400, "InvalidIdentityToken",
                    "The web identity token is not accepted"};
  }
  const IssuedCredentials c =
      issuer->Issue(call.Param("RoleArn"), call.lifetime);
  XmlNode& result = root->Add("AssumeRoleWithWebIdentityResult");
  AddCredentials(c, &result);
  result.Add("SubjectFromWebIdentityToken", "system:serviceaccount:canary");
  AddAssumedRoleUser(call, &result);
  result.Add("Audience", "sts.amazonaws.com");
  return std::nullopt;
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

absl::Status CredentialIssuer::VerifyStsSignature(const HttpRequest& request) {
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
}

void CredentialIssuer::HandleSts(const HttpRequest& request,
                                 ResponsePlan* plan) {
  std::string request_id;
  {
    absl::MutexLock lock(&mu_);
    request_id = absl::StrCat("5757", ++requests_, "-0000-4000-8000-sts");
  }
  plan->headers.emplace_back("x-amzn-RequestId", request_id);
  StsCall call;
  std::optional<StsError> error =
      ParseStsCall(request, config_.has_credential_lifetime(), &call);
  XmlNode root{absl::StrCat(call.action, "Response"), "", {}};
  if (error) {
    // Answered below.
  } else if (call.action == "AssumeRoleWithWebIdentity") {
    error = AnswerWebIdentity(call, config_.web_identity_tokens(), this, &root);
  } else if (call.action == "AssumeRole" ||
             call.action == "GetCallerIdentity") {
    // Signed calls are verified against static and issued credentials, in
    // the region the caller signed for.
    if (absl::Status s = VerifyStsSignature(request); !s.ok()) {
      error = StsError{403, StsAuthErrorCode(s), std::string(s.message())};
    } else if (call.action == "AssumeRole") {
      const IssuedCredentials c = Issue(call.Param("RoleArn"), call.lifetime);
      XmlNode& result = root.Add("AssumeRoleResult");
      AddCredentials(c, &result);
      AddAssumedRoleUser(call, &result);
    } else {
      XmlNode& result = root.Add("GetCallerIdentityResult");
      result.Add("Account", "123456789012");
      result.Add("UserId", "AIDAEMULATOR");
      result.Add("Arn", "arn:aws:iam::123456789012:user/emulator");
    }
  } else {
    error = StsError{
        400, "InvalidAction",
        absl::StrCat("Could not find operation ", call.action.substr(0, 64))};
  }
  if (error) {
    SetBody(plan, error->status,
            QueryErrorXml(kStsNs, error->code, error->message, request_id),
            "text/xml");
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
